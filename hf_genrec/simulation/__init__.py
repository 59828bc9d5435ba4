"""A ground-truth simulator: a world whose true reward r*(history, item) is known for every item, and logs drawn
from it with knobs (logging policy strength and coverage, rating noise, popularity bias, missingness, traps).

```python
>>> from hf_genrec.simulation import World, LoggingPolicy, simulate_logs
>>> world = World.synthetic(num_users=200, num_items=100, seed=0)
>>> interactions, truth = simulate_logs(world, events_per_user=20, policy=LoggingPolicy(strength=2.0), seed=0)
```
"""

from .logging_policy import LoggingPolicy, ObservationModel, SimulationTruth, simulate_logs
from .world import World

__all__ = ["World", "LoggingPolicy", "ObservationModel", "SimulationTruth", "simulate_logs"]
