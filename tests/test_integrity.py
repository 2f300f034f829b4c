from ratedial.integrity import Gap, GapReason, IndexLedger
from ratedial.wire import Drop, Samples


def frame(first: int, n: int = 10) -> Samples:
    return Samples(seq=0, first_index=first, period_us=1000, counts=(0,) * n,
                   times_us=tuple(range(n)), flags=(0,) * n)


def test_contiguous_frames_have_no_gaps():
    led = IndexLedger()
    for i in range(5):
        new, gaps = led.accept(frame(100 + 10 * i))
        assert new == range(100 + 10 * i, 110 + 10 * i)
        assert gaps == []
    assert led.received == 50
    assert led.total_missing == 0


def test_gap_split_between_device_drop_and_link_loss():
    led = IndexLedger()
    led.accept(frame(0))
    led.note_drop(Drop(seq=0, first_index=20, n_samples=30, n_frames=3))
    _, gaps = led.accept(frame(60))
    assert gaps == [Gap(10, 20, GapReason.LINK), Gap(20, 50, GapReason.DEVICE_DROP),
                    Gap(50, 60, GapReason.LINK)]
    assert led.missing[GapReason.DEVICE_DROP] == 30
    assert led.missing[GapReason.LINK] == 20
    assert led.received + led.total_missing == 70


def test_rejected_frames_and_unplug_are_named():
    led = IndexLedger()
    led.accept(frame(0))
    led.note_rejects()
    assert led.accept(frame(20))[1] == [Gap(10, 20, GapReason.CRC)]
    led.note_unplugged()
    assert led.accept(frame(100))[1] == [Gap(30, 100, GapReason.UNPLUGGED)]
    assert led.accept(frame(110))[1] == []


def test_duplicates_and_overlaps_are_counted_once():
    led = IndexLedger()
    led.accept(frame(0))
    assert led.accept(frame(0)) == (range(0), [])
    new, gaps = led.accept(frame(5))
    assert new == range(10, 15)
    assert gaps == []
    assert led.duplicates == 15
    assert led.received == 15
