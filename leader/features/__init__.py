"""Teacher features: durable sharded store, Ray extraction job, and the object-store actor."""

from leader.features.types import TeacherFeatures

__all__ = ["TeacherFeatures"]
