"""The pure layer: answers, voting, prompting, the tool loop, per-problem scheduling,
records and replay. Nothing here imports Ray or starts a timer; everything is tested
without a cluster (``tests/test_layers.py`` checks that no module here imports Ray)."""
