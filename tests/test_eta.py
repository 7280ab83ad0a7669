"""EtaLines: progress as plain lines with a rate and an ETA where there is no terminal for a bar."""

from aar.eta import EtaLines, format_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_carry_rate_and_eta_and_are_rate_limited():
    lines: list[str] = []
    clock = Clock()
    hook = EtaLines(lines.append, every=10.0, context="sentiment_movies", clock=clock)
    hook("features mpnet", 0, 1000)
    assert lines == ["features mpnet (sentiment_movies): 1,000 to compute"]
    clock.now += 5  # 200 done in 5 s: too soon for another line
    hook("features mpnet", 200, 1000)
    assert len(lines) == 1
    clock.now += 5  # 400 done in 10 s: 40/s, 600 left -> 15 s
    hook("features mpnet", 400, 1000)
    assert lines[-1] == "features mpnet (sentiment_movies): 400/1,000 (40%), 40/s, ETA 15 s"
    clock.now += 15  # the end is always reported, with the total time
    hook("features mpnet", 1000, 1000)
    assert lines[-1] == "features mpnet (sentiment_movies): 1,000/1,000 (100%), 40/s, done in 25 s"
    assert hook.jobs == {}


def test_a_restarted_or_second_job_starts_its_own_clock():
    lines: list[str] = []
    clock = Clock()
    hook = EtaLines(lines.append, every=1.0, clock=clock)
    hook("features minilm-l3", 0, 10)
    clock.now += 2
    hook("features minilm-l3", 10, 10)
    hook("features minilm-l3", 0, 50)  # the same model for the next task: a new job
    clock.now += 10
    hook("features minilm-l3", 25, 50)
    assert lines[-1] == "features minilm-l3: 25/50 (50%), 2/s, ETA 10 s"


def test_nothing_to_compute_prints_nothing_and_seconds_read_naturally():
    lines: list[str] = []
    EtaLines(lines.append)("features mpnet", 0, 0)
    assert lines == []
    assert [format_seconds(s) for s in (4.4, 75, 3700)] == ["4 s", "1 min 15 s", "1 h 01 min"]
