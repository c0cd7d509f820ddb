"""Calls between Python and an OPA Wasm module over wasmtime's unchecked C entry points.

wasmtime-py's ``Func.__call__`` looks up the function's type, converts every argument and result through ``Val``
objects and wraps host callbacks the same way: about 100 µs per crossing here, and a decision crosses ~25 times
(the evaluation, and per host builtin a callback, one dump per argument, a parse of the answer), which made an
in-process decision slower than a round trip to OPA. OPA's ABI is all i32 in, i32 out, so these calls write the
arguments into one raw array and read the result back from it (``wasmtime_func_call_unchecked`` /
``wasmtime_func_new_unchecked``). They use wasmtime-py's ctypes bindings (``wasmtime._ffi``), which are not its
public API: the version is pinned in uv.lock, and the differential tests exercise every call here.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi  # the C API's ctypes bindings (see the module docstring)

_RAW_SLOTS = 8  # enough for opa_eval's seven arguments and any builtin's (at most 4 operands + id + context)


class RawI32Function:
    """An exported function of i32s called without wasmtime-py's per-call type conversions."""

    def __init__(self, store: wasmtime.Store, function: wasmtime.Func) -> None:
        self._store = store
        self._func = function._func
        self._values = (ffi.wasmtime_val_raw_t * _RAW_SLOTS)()

    def __call__(self, *arguments: int) -> int:
        values = self._values
        for index, argument in enumerate(arguments):
            values[index].i32 = argument
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        error = ffi.wasmtime_func_call_unchecked(self._store._context(), ctypes.byref(self._func), values,
                                                 _RAW_SLOTS, ctypes.byref(trap))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        return int(values[0].i32) & 0xFFFFFFFF  # addresses are unsigned


HostFunction = Callable[..., int]


class RawHostFunctions:
    """Host functions of i32s for a module's imports. An exception in one is kept in ``failure`` and turned into a
    trap, which ends the evaluation; the caller re-raises ``failure`` (wasmtime's trap text cannot carry it)."""

    def __init__(self, store: wasmtime.Store) -> None:
        self._store = store
        self._callbacks: list[Any] = []  # the ctypes callbacks must live as long as the module
        self.failure: BaseException | None = None

    def define(self, linker: wasmtime.Linker, module: str, name: str, parameters: int, results: int,
               function: HostFunction) -> None:
        i32 = wasmtime.ValType.i32()

        def callback(_env: Any, _caller: Any, values: Any, _count: int) -> int:
            try:
                answer = function(*(values[i].i32 & 0xFFFFFFFF for i in range(parameters)))
                if results:
                    values[0].i32 = answer
                return 0
            except BaseException as error:  # any failure must end the evaluation, never pass silently
                self.failure = error
                # The trap now belongs to wasmtime, which frees it.
                pointer = wasmtime.Trap(f"host function {name} failed")._consume()
                return ctypes.cast(pointer, ctypes.c_void_p).value or 0

        raw_callback = ffi.wasmtime_func_unchecked_callback_t(callback)
        finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(lambda _env: None)
        self._callbacks += [raw_callback, finalizer]
        function_type = wasmtime.FuncType([i32] * parameters, [i32] * results)
        raw = ffi.wasmtime_func_t()
        ffi.wasmtime_func_new_unchecked(self._store._context(), function_type.ptr(), raw_callback, None,
                                        finalizer, ctypes.byref(raw))
        linker.define(self._store, module, name, wasmtime.Func._from_raw(raw))
