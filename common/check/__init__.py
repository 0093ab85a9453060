"""`make check`: the rules that keep the stages honest.

Each rule is a small module with one `check(root, stages) -> RuleResult` function:

- `structure`  every stage has the files and the ARCHITECTURE.md sections of the template
- `drift`      every file that differs from the previous stage is listed in "What changed"
- `docs`       a code block with `title="path"` appears in that file word for word
- `demo_lint`  demo.http is plain REST Client syntax with one `# expect:` per request

Run it as `python -m common.check [--root DIR]`. The rules only read files; none of them
imports a stage's code, so a broken stage cannot break the checker.
"""
