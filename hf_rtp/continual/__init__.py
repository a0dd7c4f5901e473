"""Continual learning (sec 5.2): task streams (`streams`) and the learners compared on them (`learners`), among
them compress-then-recall, the paper's method, which distils each task into a memory with the main outer loop."""

from .learners import (
    EWC,
    LEARNERS,
    METHODS,
    BufferOverflow,
    ClassBalancedBuffer,
    CompressThenRecall,
    ContinualConfig,
    ContinualMethod,
    Online,
    Replay,
    Reservoir,
    TaskDistiller,
    inner_loop,
    make_method,
    network,
    retrain,
    per_sample_squared_gradients,
    run_stream,
)
from .scoring import score_bank
from .streams import (
    BUFFER_SAMPLES,
    STREAM_DEFAULTS,
    STREAMS,
    Permutation,
    Rotation,
    StreamConfig,
    Task,
    TaskStream,
    backward_transfer,
    build_stream,
    retained_accuracy,
    task_accuracy,
    task_test_set,
    tasks_from_definition,
)

__all__ = [
    "BUFFER_SAMPLES", "BufferOverflow", "ClassBalancedBuffer", "CompressThenRecall", "ContinualConfig", "ContinualMethod",
    "EWC", "LEARNERS", "METHODS", "Online", "Permutation", "Replay", "Reservoir", "Rotation", "STREAMS", "STREAM_DEFAULTS",
    "StreamConfig", "Task", "TaskDistiller", "TaskStream", "backward_transfer", "build_stream", "inner_loop", "make_method",
    "network", "per_sample_squared_gradients", "retained_accuracy", "retrain", "run_stream", "task_accuracy",
    "score_bank", "task_test_set", "tasks_from_definition",
]
