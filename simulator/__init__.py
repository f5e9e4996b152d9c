"""The simulated platform: a seeded world whose days of logs feed the pipeline.

Pure functions, no I/O: the caller (jobs/) reads the previous days' engagements and writes
the returned frames through the warehouse.
"""

from simulator.config import BehaviourSettings, SimulatorSettings
from simulator.day import (
    DayLogs,
    ShardLogs,
    SocialState,
    simulate_day,
    simulate_shard,
    social_state,
)
from simulator.posts import posts_for_day
from simulator.world import World, build_world

__all__ = [
    "BehaviourSettings",
    "DayLogs",
    "ShardLogs",
    "SimulatorSettings",
    "SocialState",
    "World",
    "build_world",
    "posts_for_day",
    "simulate_day",
    "simulate_shard",
    "social_state",
]
