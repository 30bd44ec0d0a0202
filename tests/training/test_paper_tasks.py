"""The paper's task generators: shapes, symbol layout, marker positions, targets, baselines."""

import math

import pytest
import torch

from training.paper_tasks import (
    ADDING_BASELINE,
    BLANK,
    DELIMITER,
    N_COPY_CLASSES,
    InvalidSequenceLengthError,
    UnknownTaskError,
    adding_baseline,
    adding_batch,
    adding_loss,
    copy_accuracy,
    copy_baseline,
    copy_batch,
    copy_loss,
    get_task,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("delay", [1, 5, 100])
def test_copy_batch_layout(delay: int) -> None:
    batch = copy_batch(64, delay, gen())
    length = delay + 20
    assert batch.x.shape == (64, length, 10)
    assert batch.x.dtype == torch.float32
    assert batch.y.shape == (64, length)
    assert batch.y.dtype == torch.long
    assert torch.all(batch.x.sum(dim=-1) == 1.0), "every step is exactly one-hot"

    symbols = batch.x.argmax(dim=-1)  # (B, T+20)
    data = symbols[:, :10]
    assert data.min() >= 1 and data.max() <= 8
    assert torch.all(symbols[:, 10 : 10 + delay - 1] == BLANK)
    assert torch.all(symbols[:, 10 + delay - 1] == DELIMITER)
    assert torch.all(symbols[:, 10 + delay :] == BLANK)
    assert (symbols == DELIMITER).sum() == 64, "one delimiter per sequence"

    assert torch.all(batch.y[:, : delay + 10] == BLANK)
    assert torch.equal(batch.y[:, -10:], data), "the target recalls the data in order"
    assert batch.y.max() < N_COPY_CLASSES


def test_copy_symbols_cover_all_eight_data_values() -> None:
    data = copy_batch(200, 3, gen()).x.argmax(dim=-1)[:, :10]
    assert set(data.flatten().tolist()) == set(range(1, 9))


def test_generators_are_reproducible_from_the_seed() -> None:
    assert torch.equal(copy_batch(8, 10, gen(3)).x, copy_batch(8, 10, gen(3)).x)
    assert not torch.equal(copy_batch(8, 10, gen(3)).x, copy_batch(8, 10, gen(4)).x)
    a, b = adding_batch(8, 10, gen(3)), adding_batch(8, 10, gen(3))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


@pytest.mark.parametrize("seq_len", [2, 3, 11, 100])
def test_adding_batch_markers_and_target(seq_len: int) -> None:
    batch = adding_batch(256, seq_len, gen())
    assert batch.x.shape == (256, seq_len, 2)
    assert batch.y.shape == (256, 1)
    values, markers = batch.x[..., 0], batch.x[..., 1]
    assert values.min() >= 0.0 and values.max() <= 1.0
    assert torch.all(markers.sum(dim=1) == 2.0), "exactly two markers"
    assert set(markers.flatten().tolist()) <= {0.0, 1.0}
    half = seq_len // 2
    assert torch.all(markers[:, :half].sum(dim=1) == 1.0), "one marker in [0, T//2)"
    assert torch.all(markers[:, half:].sum(dim=1) == 1.0), "one marker in [T//2, T)"
    torch.testing.assert_close(batch.y[:, 0], (values * markers).sum(dim=1))


def test_adding_marker_positions_span_each_half() -> None:
    markers = adding_batch(2000, 10, gen()).x[..., 1]
    first = markers[:, :5].argmax(dim=1)
    second = markers[:, 5:].argmax(dim=1) + 5
    assert set(first.tolist()) == set(range(5))
    assert set(second.tolist()) == set(range(5, 10))


def test_copy_baseline_values() -> None:
    # ANCHORS.md: 0.1733 / 0.0945 / 0.0650 / 0.0400 at T = 100 / 200 / 300 / 500
    expected = {100: 0.1733, 200: 0.0945, 300: 0.0650, 500: 0.0400}
    for delay, value in expected.items():
        assert copy_baseline(delay) == pytest.approx(value, abs=5e-5)
    assert copy_baseline(10) == pytest.approx(10 * math.log(8) / 30)


def test_copy_baseline_is_the_loss_of_the_memoryless_strategy() -> None:
    """Blank everywhere, then uniform over the 8 data symbols: exactly 10 ln 8 / (T + 20)."""
    batch = copy_batch(16, 30, gen())
    logits = torch.full((16, 50, N_COPY_CLASSES), -1e4)
    logits[:, :40, BLANK] = 0.0
    logits[:, 40:, 1:] = 0.0  # uniform over the data symbols
    assert copy_loss(logits, batch.y).item() == pytest.approx(copy_baseline(30), rel=1e-5)


def test_adding_baseline_is_the_variance_of_the_sum() -> None:
    assert adding_baseline(100) == adding_baseline(750) == ADDING_BASELINE
    assert pytest.approx(0.167, abs=5e-4) == ADDING_BASELINE
    batch = adding_batch(20000, 20, gen())
    constant = torch.ones(20000, 20, 1)  # always predict E[U1 + U2] = 1
    assert adding_loss(constant, batch.y).item() == pytest.approx(ADDING_BASELINE, rel=0.03)


def test_adding_loss_reads_only_the_last_step() -> None:
    batch = adding_batch(4, 10, gen())
    pred = torch.zeros(4, 10, 1)
    pred[:, -1] = batch.y
    pred[:, :-1] = 123.0
    assert adding_loss(pred, batch.y).item() == 0.0


def test_copy_accuracy_counts_only_the_recalled_symbols() -> None:
    batch = copy_batch(4, 5, gen())
    logits = torch.nn.functional.one_hot(batch.y, N_COPY_CLASSES).float()
    assert copy_accuracy(logits, batch.y) == 1.0
    logits[:, :-10, 1] = 2.0  # wrong before the recall window: does not count
    assert copy_accuracy(logits, batch.y) == 1.0
    logits[:, -10:] = torch.roll(logits[:, -10:], 1, dims=-1)  # every recalled symbol wrong
    assert copy_accuracy(logits, batch.y) == 0.0


def test_invalid_lengths_and_task_names_are_specific_errors() -> None:
    with pytest.raises(InvalidSequenceLengthError, match="T >= 1"):
        copy_batch(2, 0, gen())
    with pytest.raises(InvalidSequenceLengthError, match="T >= 2"):
        adding_batch(2, 1, gen())
    with pytest.raises(UnknownTaskError, match="copy, adding"):
        get_task("mnist")


def test_task_descriptions_match_the_generators() -> None:
    for name in ("copy", "adding"):
        task = get_task(name)
        batch = task.make_batch(3, 7, gen())
        assert batch.x.shape[-1] == task.input_size
        pred = torch.zeros(3, batch.x.shape[1], task.output_size)
        assert task.loss(pred, batch.y).ndim == 0
