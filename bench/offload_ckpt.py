"""Offloaded gradient checkpointing for HF decoder layers, as Unsloth ships it (written here).

Used by bench/hf_peer.py's `--checkpointing offload` (the strong peer, docs/benchmarks.md).

Per decoder layer, in forward:
  - the layer's input hidden state x is copied to a pinned host buffer on a side CUDA stream
    (`non_blocking`; the side stream first waits on an event recorded on the compute stream, so it
    copies x only once x is written, while the compute stream itself never waits for the copy;
    `x.record_stream(side)` keeps the allocator from reusing x's memory before the copy is done);
  - the layer runs without autograd: none of its activations are kept; only the output is
    returned (it is the next layer's input, offloaded in turn).
In backward (layers come back in reverse order):
  - x is copied back to the device on the side stream, unless it was already prefetched, and the
    compute stream waits on that copy's event alone;
  - then the input of the layer that backward reaches next (the one before this one in forward)
    is prefetched on the side stream, so its host-to-device copy overlaps this layer's recompute
    and backward (this holds one extra hidden state, N x hidden, on the device);
  - the layer is recomputed with autograd on a detached copy of x that requires grad, and
    `torch.autograd.backward(output, grad_output)` accumulates the LoRA parameters' gradients and
    yields x's gradient, which is returned (the reentrant scheme torch's `use_reentrant=True`
    checkpoint uses). The recompute runs the same ops on the same input, so the losses and LoRA
    gradients are those of plain GPU checkpointing; RNG state is not replayed (LoRA dropout is 0
    and Llama's attention dropout is 0 in these runs).
On the CPU there is nothing to offload to and there are no streams or pinned memory: the input is
kept as a plain CPU copy (x.clone()), which makes the mode testable on the CPU (bench/test_bench.py)
with the same recompute path.

Host memory is a budget too: `OffloadCheckpointer.pinned_peak_bytes` is the most bytes of
offloaded inputs held at once (all decoder layers' inputs at the end of forward: layers x N x
hidden x dtype bytes). The pinned buffers come from torch's caching host allocator, so the second
step reuses the first step's buffers instead of pinning new memory.
"""
import torch


class _Saved:
    """One layer's offloaded input, linked to the input of the layer before it (same forward)."""

    __slots__ = ("host", "d2h_done", "device", "h2d_done", "prev", "shape", "dtype", "device_of", "nbytes")

    def __init__(self):
        self.host = self.d2h_done = self.device = self.h2d_done = self.prev = None


class OffloadCheckpointer:
    """The checkpoint function (`fn(run_fn, *args)`) that HF's GradientCheckpointingLayer calls.

    Install with `install(model)` after `gradient_checkpointing_enable()`; it replaces the
    `_gradient_checkpointing_func` that transformers set on every module that has one, and resets
    its chain of saved inputs at the start of each forward of the model."""

    def __init__(self):
        self.last = None  # newest _Saved of the current forward
        self.live_bytes = 0
        self.pinned_peak_bytes = 0
        self._side = {}  # device -> side stream

    # -- bookkeeping ---------------------------------------------------------------------------
    def reset(self):
        """A new forward: drop what an earlier forward left (e.g. one cut short by an OOM)."""
        node = self.last
        while node is not None:
            prev = node.prev
            node.host = node.device = node.prev = None
            node = prev
        self.last = None
        self.live_bytes = 0

    def reset_peak(self):
        self.pinned_peak_bytes = 0

    def side_stream(self, device):
        if device not in self._side:
            self._side[device] = torch.cuda.Stream(device=device)
        return self._side[device]

    def install(self, model):
        """Use this checkpointer for every layer that transformers' checkpointing hook drives."""
        n = 0
        for module in model.modules():
            if hasattr(module, "gradient_checkpointing") and hasattr(module, "_gradient_checkpointing_func"):
                module._gradient_checkpointing_func = self
                n += 1
        if n == 0:
            raise RuntimeError("no module with a _gradient_checkpointing_func: call "
                               "gradient_checkpointing_enable() first")
        if not getattr(model, "_lemo_offload_reset_hook", None):
            model._lemo_offload_reset_hook = model.register_forward_pre_hook(lambda *_: self.reset())
        return n

    # -- copies --------------------------------------------------------------------------------
    def offload(self, x):
        """Saves x (a layer's input) off the device; returns its _Saved, linked into the chain."""
        s = _Saved()
        s.shape, s.dtype, s.device_of = x.shape, x.dtype, x.device
        s.nbytes = x.numel() * x.element_size()
        if x.device.type == "cuda":
            compute = torch.cuda.current_stream(x.device)
            side = self.side_stream(x.device)
            ready = torch.cuda.Event()
            ready.record(compute)
            side.wait_event(ready)  # the copy reads x only once the compute stream has written it
            s.host = torch.empty(x.shape, dtype=x.dtype, device="cpu", pin_memory=True)
            with torch.cuda.stream(side):
                s.host.copy_(x.detach(), non_blocking=True)
                s.d2h_done = torch.cuda.Event()
                s.d2h_done.record(side)
            x.record_stream(side)  # x's memory is not reused before the side stream has read it
        else:  # CPU: no device to offload from, no pinned memory, no streams: a plain copy
            s.host = x.detach().clone()
        s.prev = self.last
        self.last = s
        self.live_bytes += s.nbytes
        self.pinned_peak_bytes = max(self.pinned_peak_bytes, self.live_bytes)
        return s

    def fetch(self, s):
        """Starts copying s back to the device (no-op if under way or on the CPU)."""
        if s is None or s.device is not None or s.host is None:
            return
        if s.device_of.type != "cuda":
            s.device = s.host
            return
        compute = torch.cuda.current_stream(s.device_of)
        side = self.side_stream(s.device_of)
        # Allocated on the compute stream, which alone uses it; the side stream waits for the
        # compute stream's work so far (the block may have been freed by it), then copies.
        s.device = torch.empty(s.shape, dtype=s.dtype, device=s.device_of)
        side.wait_stream(compute)
        with torch.cuda.stream(side):
            s.device.copy_(s.host, non_blocking=True)  # after s's own D2H: same stream, in order
            s.h2d_done = torch.cuda.Event()
            s.h2d_done.record(side)

    def restore(self, s):
        """s's input back on the device, ready for the compute stream; prefetches the next one."""
        self.fetch(s)
        if s.h2d_done is not None:
            torch.cuda.current_stream(s.device_of).wait_event(s.h2d_done)
        x = s.device
        # Prefetch the input of the layer whose backward comes next (the previous one in forward).
        self.fetch(s.prev)
        # This layer's copies are no longer needed once recomputed (the caching host allocator
        # records the copy's stream, so the pinned block is reused only after the copy is done).
        self.live_bytes -= s.nbytes
        s.host = s.device = s.h2d_done = s.d2h_done = None
        if self.last is s:
            self.last = s.prev
        s.prev = None
        return x

    # -- the checkpoint function ---------------------------------------------------------------
    def __call__(self, run_fn, hidden_states, *args):
        """run_fn(hidden_states, *args): transformers 5 passes the layer's other inputs as keyword
        arguments bound into run_fn, older versions as positional ones; those must not need a
        gradient (masks, position ids, RoPE cos/sin). They are kept by reference, not offloaded."""
        if not torch.is_grad_enabled():
            return run_fn(hidden_states, *args)
        if any(torch.is_tensor(a) and a.requires_grad for a in args):
            raise TypeError("offloaded checkpointing: only the hidden state may require grad")
        if not hidden_states.requires_grad:
            # The first layer's input (frozen embeddings) may not require grad; without it the
            # Function's backward would never run and the LoRA grads would be silently missing.
            # Nothing upstream needs a gradient then, so a detached leaf changes nothing else.
            hidden_states = hidden_states.detach().requires_grad_(True)
        box = {}
        out = _OffloadedLayer.apply(self, run_fn, box, hidden_states, *args)
        return (out,) + box["rest"] if "rest" in box else out


class _OffloadedLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ckpt, run_fn, box, x, *args):
        ctx.ckpt, ctx.run_fn, ctx.args = ckpt, run_fn, args
        ctx.saved = ckpt.offload(x)
        out = run_fn(x, *args)  # Function.forward runs without autograd: no activations are kept
        if isinstance(out, tuple):  # older transformers: (hidden_states, None, ...)
            if any(torch.is_tensor(o) for o in out[1:]):
                raise TypeError("offloaded checkpointing supports layers returning one tensor")
            box["rest"] = out[1:]
            out = out[0]
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x = ctx.ckpt.restore(ctx.saved)
        ctx.saved = None
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = ctx.run_fn(x, *ctx.args)
        if isinstance(out, tuple):
            out = out[0]
        torch.autograd.backward(out, grad_out)
        return (None, None, None, x.grad) + (None,) * len(ctx.args)
