"""bench.serve's report: the ratios it prints are computed from the cells it is given (no
server is started here; `make bench-serve` runs the real thing)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.serve import Cell, device_name, parse_args, payloads, report


def _cell(server: str, body: str, series: int, conc: int, requests: int) -> Cell:
    cell = Cell(server, series, conc, requests, 2.0, [0.001 * (i + 1) for i in range(100)], 0)
    cell.body = body
    cell.batch = 64.0 if server == "a" else None
    cell.client_ms = 0.125 if body == "arrow" else 0.25
    return cell


def test_report_puts_both_body_formats_beside_mlflow_and_the_best_raw_forward() -> None:
    cells = [
        _cell("a", "json", 16, 32, 1000),  # 8,000 forecasts/s
        _cell("a", "arrow", 16, 32, 2000),  # 16,000
        _cell("b", "json", 16, 32, 20),  # 160
    ]
    raw = {"eager": {16: 15_000.0, 256: 18_000.0}, "traced": {16: 17_000.0, 256: 20_000.0}}
    stages = {f: {16: {"read": 0.1, "forward": 0.5}} for f in ("json", "arrow")}
    args = SimpleNamespace(
        hidden_size=64,
        segment_length=16,
        warmup=1.0,
        seconds=2.0,
        formats=["json", "arrow"],
        series=[16],
        concurrency=[32],
        workers=2,
    )
    text = report(cells, raw, stages, args)
    assert "(a): 2 uvicorn worker process(es); (b): 1" in text
    assert "-> c = 20,000 (traced, B=256)" in text
    assert "| 16 | 32 | a: this service, Arrow | 1,000.0 | 16,000 |" in text
    assert "| 100.0x | 0.80 | 64 | 0.125 |" in text  # a/b, a/c, batch, client of the Arrow row
    assert "| 50.0x | 0.40 | 64 | 0.250 |" in text  # the JSON row
    assert (
        "- Arrow, best a = 16,000 forecasts/s (16 series, concurrency 32) vs c = 20,000: "
        "a/c = 0.80 (target >= 0.7): met" in text
    )
    assert "- JSON, best a = 8,000" in text and "a/c = 0.40 (target >= 0.7): NOT met" in text
    assert "Where one request's time goes, Arrow bodies" in text


def test_payloads_carry_the_same_histories_in_both_formats() -> None:
    import orjson

    from service.arrow_io import read_arrow_request
    from service.fast_path import fast_request

    payload = payloads(3)
    by_json = fast_request(orjson.loads(payload.ours))
    by_arrow = read_arrow_request(payload.arrow)
    assert by_json is not None and by_json.horizon == by_arrow.horizon == 96
    for a, b in zip(by_json.series, by_arrow.series, strict=True):
        assert (a.id, a.start, a.freq) == (b.id, b.start, b.freq)
        assert (a.values == b.values).all() and len(a.values) == 512


def test_c_is_the_better_of_its_two_measurements() -> None:
    from bench.serve import best_of

    before = {"eager": {16: 10.0, 256: 30.0}, "traced": {16: 12.0, 256: 25.0}}
    after = {"eager": {16: 11.0, 256: 20.0}, "traced": {16: 9.0, 256: 28.0}}
    assert best_of(before, after) == {
        "eager": {16: 11.0, 256: 30.0},
        "traced": {16: 12.0, 256: 28.0},
    }


def test_the_report_names_the_device_and_cuda_is_refused_without_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert parse_args([]).device == "cpu"
    if torch.cuda.is_available():
        assert parse_args(["--device", "cuda"]).device == "cuda"
        assert device_name("cuda").startswith("cuda (")
    else:
        with pytest.raises(SystemExit) as stopped:
            parse_args(["--device", "cuda"])
        assert stopped.value.code == 2
        assert "cuda is not available here" in capsys.readouterr().err
    assert device_name("cpu") == "cpu"


def test_workers_must_be_one_or_more(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_args(["--workers", "2"]).workers == 2
    assert parse_args([]).workers == 1
    with pytest.raises(SystemExit):
        parse_args(["--workers", "0"])
    assert "argument --workers: must be 1 or more, got 0" in capsys.readouterr().err
