"""Spreading per-image work over the processes that ``torchrun`` (torch.distributed) launches.

``torchrun --nproc_per_node=N [--nnodes=M --rdzv-endpoint=HOST:PORT ...] -m pti run ...``
starts ``N * M`` processes and gives each the environment variables ``RANK`` (0 ..
``WORLD_SIZE - 1``), ``WORLD_SIZE``, ``LOCAL_RANK`` (0 .. N - 1 on its node), ``MASTER_ADDR``
and ``MASTER_PORT``. :func:`setup` reads them: with ``WORLD_SIZE > 1`` it joins the process
group (``nccl`` when the process works on a CUDA device, ``gloo`` on the CPU) and picks the
device ``cuda:LOCAL_RANK``; without them (a plain ``pti run``) it is a one-process context and
no process group is made. The helpers below (:func:`barrier`, :func:`all_gather_objects`,
:func:`broadcast_from_main`) are no-ops in a one-process context, so callers need no branches.

Work is split by :func:`shard`: rank ``r`` of ``W`` takes items ``r, r + W, r + 2W, ...`` of
the (sorted) list, a fixed assignment that needs no communication.
"""
from __future__ import annotations

import os
import socket
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Mapping, Sequence, TypeVar

import torch

T = TypeVar("T")

#: how long a collective (the end-of-job barrier) may wait for the slowest rank, by default
DEFAULT_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job.

    ``backend`` is ``None`` in a one-process run (no process group); ``owns_group`` says whether
    :func:`setup` created the process group (and :func:`teardown` must destroy it).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready record of this worker: rank, world size, local rank, host, device, and what its
        results' last bits depend on (:func:`numerics_record`: thread count, kernel ISA, GPU name)."""
        return {"rank": self.rank, "world_size": self.world_size, "local_rank": self.local_rank,
                "host": socket.gethostname(), "device": str(self.device), **numerics_record(self.device)}


#: environment variables that choose CPU kernels (oneDNN's and ATen's instruction set caps)
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")


def numerics_record(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What a result's rounding depends on besides the seed, for ``metrics.json``'s "worker" record.

    ``threads``: ``torch.get_num_threads()`` (intra-op threads split reductions differently: torchrun sets
    ``OMP_NUM_THREADS=1`` per process, a plain run uses every core, and outputs then differ in their last
    bits, which hundreds of optimisation steps grow to whole 8-bit levels); ``cpu_capability``: the ISA of
    ATen's CPU kernels (``torch.backends.cpu.get_cpu_capability()``: 'AVX2', 'AVX512', ...); ``isa_env``:
    :data:`ISA_ENV` variables that are set; ``cuda_device``: the GPU's name on a CUDA device, else None.
    Per-image results are reproducible for equal values of these (and equal torch builds).
    """
    device = torch.device(device)
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    cuda_name = None
    if device.type == "cuda" and torch.cuda.is_available():
        cuda_name = torch.cuda.get_device_name(device)
    return {"threads": torch.get_num_threads(), "cpu_capability": capability() if capability else None,
            "isa_env": {name: os.environ[name] for name in ISA_ENV if name in os.environ},
            "cuda_device": cuda_name, "torch": torch.__version__}


def _env_int(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer; it is set by torchrun "
                         f"(unset it to run on one process)") from None


def launch_env(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's variables; ``(0, 1, 0)`` when not launched by it."""
    environ = os.environ if environ is None else environ
    world = _env_int(environ, "WORLD_SIZE", 1)
    rank = _env_int(environ, "RANK", 0)
    local = _env_int(environ, "LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world or local < 0:
        raise ValueError(f"inconsistent torchrun variables RANK={rank}, WORLD_SIZE={world}, LOCAL_RANK={local}: "
                         f"need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0")
    return rank, world, local


def pick_device(request: str, local_rank: int = 0) -> torch.device:
    """The device for this process.

    ``request``: ``'auto'`` (``cuda:LOCAL_RANK`` when CUDA is available, else the CPU), ``'cpu'``,
    ``'cuda'`` (``cuda:LOCAL_RANK``) or an explicit ``'cuda:K'`` (used as given). Raises
    ``ValueError`` when CUDA is asked for but missing, or LOCAL_RANK has no GPU of its own.
    """
    if request == "auto":
        request = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(request)
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise ValueError(f"--device {request}: CUDA is not available on this machine; use --device cpu")
    count = torch.cuda.device_count()
    index = local_rank if device.index is None else device.index
    if index >= count:
        raise ValueError(f"--device {request}: this process needs GPU {index} (LOCAL_RANK={local_rank}) but only "
                         f"{count} GPU(s) are visible; start at most {count} processes per node "
                         f"(torchrun --nproc_per_node={count}) or use --device cpu")
    return torch.device("cuda", index)


def setup(device_request: str = "auto", timeout: timedelta = DEFAULT_TIMEOUT,
          environ: Mapping[str, str] | None = None) -> DistContext:
    """Pick this process's device and, under torchrun with ``WORLD_SIZE > 1``, join the process group.

    The backend is ``nccl`` for CUDA devices and ``gloo`` for the CPU; ``timeout`` bounds how long a
    collective waits (the end-of-job barrier waits for the slowest rank). A process group that is
    already initialised (a caller's script did it) is used as is and left alone by :func:`teardown`.
    """
    import torch.distributed as dist

    rank, world, local = launch_env(environ)
    device = pick_device(device_request, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world == 1:
        return DistContext(device=device)
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world} but this PyTorch build has no torch.distributed; "
                           f"run without torchrun")
    if dist.is_initialized():
        if dist.get_world_size() != world or dist.get_rank() != rank:
            raise RuntimeError(f"an existing process group (rank {dist.get_rank()} of {dist.get_world_size()}) "
                               f"disagrees with RANK={rank}, WORLD_SIZE={world}")
        return DistContext(rank, world, local, device, dist.get_backend(), owns_group=False)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda" and world > 1 and device.index != local:
        warnings.warn(f"rank {rank} uses {device} although LOCAL_RANK={local}; several ranks may share a GPU",
                      RuntimeWarning, stacklevel=2)
    kwargs: dict[str, Any] = {"device_id": device} if backend == "nccl" else {}
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world, timeout=timeout,
                            **kwargs)
    return DistContext(rank, world, local, device, backend, owns_group=True)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank ``rank``'s share of ``items``: ``items[rank::world_size]`` (disjoint; the shares cover all)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return list(items[rank::world_size])


def barrier(ctx: DistContext) -> None:
    """Wait until every rank gets here (no-op in a one-process run)."""
    if ctx.distributed:
        import torch.distributed as dist

        if ctx.backend == "nccl":
            dist.barrier(device_ids=[ctx.device.index])
        else:
            dist.barrier()


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's (picklable) ``obj``, indexed by rank; ``[obj]`` in a one-process run."""
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_from_main(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (the other ranks' argument is ignored)."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def teardown(ctx: DistContext) -> None:
    """Destroy the process group if :func:`setup` created it."""
    if ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
