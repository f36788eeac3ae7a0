"""The run directory's format, defined once: file names, run.json keys, metrics.jsonl columns, statuses.

A run directory is the one contract between training (``scaling``: the loop, checkpoints, sweep
launchers) and analysis (``analysis.load``). Both sides import this module and spell no file name or
key themselves. It lives in ``analysis`` and imports nothing, so analysis stays usable on anyone's
results without the training library (and JAX), and the dependency runs one way: scaling -> here.
Writers check every run.json key and metrics column against the lists below (``RunDir.update_run``,
``RunDir.append_metrics`` raise ``ValueError`` on an unknown one), so a new key is added here first.

Layout of ``<runs_dir>/<sweep>/<run id>/``::

    config.yaml     the resolved config; the run id is the hash of its result-determining part
    run.json        identity, N and FLOP accounting, budget, status (rewritten atomically)
    metrics.jsonl   one JSON object per logged step, append-only, in step order
    tb/             TensorBoard scalars, rebuilt from metrics.jsonl on resume
    checkpoints/    orbax checkpoints, one folder per step named by the step number
    corrupt_checkpoints/   checkpoints that failed their checksums or to load, moved aside on resume
    run.lock        held while a process trains the run
    launch.json, stdout.log, stderr.log   written by a sweep launcher: attempts, process, output
"""

# Files and folders in a run directory.
CONFIG = "config.yaml"
RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
TENSORBOARD = "tb"
CHECKPOINTS = "checkpoints"
CORRUPT_CHECKPOINTS = "corrupt_checkpoints"
LOCK = "run.lock"
LAUNCH = "launch.json"
STDOUT = "stdout.log"
STDERR = "stderr.log"

# run.json "status": pending (planned by a sweep), running, then done, failed, interrupted (by a
# signal, after a checkpoint: resumable) or killed (recorded by a sweep launcher: resumable).
DONE = "done"
STATUSES = ("pending", "running", DONE, "failed", "interrupted", "killed")

# run.json keys. Identity and status; when the run started and last ended (ISO 8601, UTC), library versions:
RUN_ID, SWEEP, SEED, STATUS, ERROR = "run_id", "sweep", "seed", "status", "error"
INTERRUPTED_STEP = "interrupted_step"  # the step an interrupted run checkpointed and stopped at
STARTED, FINISHED, VERSIONS = "started", "finished", "versions"
# Accounting (parameters; training FLOPs per token, exact and as 6N, Hoffmann et al. 2022 App. F):
N_PARAMS, N_PARAMS_EMBEDDING, N_PARAMS_NON_EMBEDDING = "n_params", "n_params_embedding", "n_params_non_embedding"
FLOPS_PER_TOKEN, FLOPS_PER_TOKEN_6N = "flops_per_token", "flops_per_token_6n"
# Budget and end: D and C the run was planned to train (C with the exact count), final validation loss.
TOKENS_TARGET, COMPUTE_TARGET = "tokens_target", "compute_target"
FINAL_EVAL_LOSS, FINAL_STEP, TOTAL_STEPS = "final_eval_loss", "final_step", "total_steps"
# The final validation loss's standard error over its batches (same units as the loss).
FINAL_EVAL_LOSS_SE = "final_eval_loss_se"
# The final validation loss of each evaluation batch, in order: every run of a config evaluates the same
# batches, so two runs' losses can be compared batch by batch (a paired difference, far less noisy).
FINAL_EVAL_BATCH_LOSSES = "final_eval_batch_losses"
# Where the last process's wall time went, in seconds: startup, first_step, eval, checkpoint, steps, total.
TIME_S = "time_s"
DATASET = "dataset"  # {"path", "source", "tokenizer": {"kind", ...}, "train_tokens"}
# Inside DATASET: the tokenizer's metadata and its kind ("byte" or "bpe"), which sets the loss unit.
TOKENIZER, TOKENIZER_KIND = "tokenizer", "kind"
KILLS = "kills"  # a sweep launcher's record of each time the run was ended from outside

RUN_KEYS = frozenset({
    RUN_ID, SWEEP, SEED, STATUS, ERROR, "name",
    N_PARAMS, N_PARAMS_EMBEDDING, N_PARAMS_NON_EMBEDDING, FLOPS_PER_TOKEN, FLOPS_PER_TOKEN_6N,
    "forward_flops_per_token", "flops_counting",
    "tokens_per_step", TOTAL_STEPS, TOKENS_TARGET, COMPUTE_TARGET, "compute_target_6n", DATASET, "epochs",
    "failed_step", INTERRUPTED_STEP, STARTED, FINISHED, "device", VERSIONS, "mesh", "resumed_from",
    "initialized_from", FINAL_EVAL_LOSS, FINAL_EVAL_LOSS_SE, FINAL_EVAL_BATCH_LOSSES, FINAL_STEP,
    TIME_S, "tokens_per_s",
    "sweep_tags", "params_count", KILLS,  # written by a sweep launcher
})
# What analysis needs in run.json to use a run at all.
REQUIRED_RUN_KEYS = (RUN_ID, N_PARAMS, N_PARAMS_NON_EMBEDDING, STATUS)

# metrics.jsonl columns: step, D and C so far (tokens, exact training FLOPs), losses in nats per tokenizer unit
# (per byte for the byte tokenizer).
STEP, TOKENS, FLOPS, TRAIN_LOSS, EVAL_LOSS = "step", "tokens", "flops", "train_loss", "eval_loss"
# The learning rate the step used, the global gradient norm before clipping.
LR, GRAD_NORM = "lr", "grad_norm"
# Throughput since the previous row (null on a process's first row), model FLOPs utilisation (null on
# a chip with no known peak), seconds since the run started, summed over its attempts.
TOKENS_PER_S, TOKENS_PER_S_PER_DEVICE, MFU, WALL_S = "tokens_per_s", "tokens_per_s_per_device", "mfu", "wall_s"
METRIC_COLUMNS = frozenset({
    STEP, TOKENS, FLOPS, TRAIN_LOSS, EVAL_LOSS, LR, GRAD_NORM, TOKENS_PER_S, TOKENS_PER_S_PER_DEVICE, MFU, WALL_S,
})
