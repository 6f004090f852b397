"""Device prefetch: batches in order, the state of the last batch handed out, errors re-raised."""
import pytest

from training.prefetch import DevicePrefetch


class _Counter:
  """A checkpointable iterator of 0, 1, 2, ... that fails at `fail_at`."""

  def __init__(self, fail_at=None):
    self.position, self.fail_at = 0, fail_at

  def __next__(self):
    if self.position == self.fail_at:
      raise OSError('disk gone')
    self.position += 1
    return self.position - 1

  def get_state(self):
    return {'position': self.position}


def test_state_is_that_of_the_last_batch_handed_out():
  prefetch = DevicePrefetch(_Counter(), lambda x: 10 * x, size=3)
  assert prefetch.get_state() == {'position': 0}
  assert [next(prefetch) for _ in range(4)] == [0, 10, 20, 30]
  assert prefetch.get_state() == {'position': 4}  # Not the position of the read-ahead.
  prefetch.close()


def test_reader_errors_reach_the_consumer_in_order():
  prefetch = DevicePrefetch(_Counter(fail_at=2), lambda x: x, size=2)
  assert [next(prefetch), next(prefetch)] == [0, 1]
  with pytest.raises(OSError, match='disk gone'):
    next(prefetch)
  prefetch.close()
