"""The decision policy compiled to WebAssembly (``opa build -t wasm``), evaluated in this process with wasmtime.

A bundle built by ``ig-policy wasm-build`` (``opa build -t wasm -e ig/ctx/decision``, ig_policy.engine.wasm_build)
holds ``/policy.wasm``, the ``data.json`` it was built with and, in its manifest, the revision the OPA sidecar reports
for the same policy directory, so the service can tell whether the module was built from the policy OPA has loaded.
OPA's Wasm ABI 1.2+ is used through its one-call ``opa_eval``: the input JSON is written above the heap mark left
after loading the data, evaluated, and the heap reset for the next call.

Not thread-safe: one instance per event loop (the service calls it from its loop only).
"""

from __future__ import annotations

import ctypes
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from ig_policy.engine.wasm_builtins import BUILTINS, CannotAnswer, Undefined
from ig_policy.engine.wasm_calls import RawHostFunctions, RawI32Function

_PAGE = 65_536
_JSON = 0  # opa_eval's input/output format: JSON text
_SCRATCH = 16_384
_REMEMBERED_ANSWERS = 4096
_UNDEFINED = object()


class WasmBundleError(ValueError):
    """The bundle cannot serve: unreadable, not a Wasm bundle, or without the decision entrypoint."""


@dataclass(frozen=True)
class WasmBundle:
    module: bytes
    data: Any
    # The revision of the policy directory it was built from (ig_policy.engine.wasm_build), from the manifest.
    revision: str

    def data_at(self, path: str) -> Any:
        document = self.data
        for part in path.split("/"):
            document = document.get(part) if isinstance(document, dict) else None
        return document


def read_bundle(path: Path, *, require_revision: bool = True) -> WasmBundle:
    try:
        with tarfile.open(path, "r:gz") as archive:
            files = {member.name.lstrip("/"): archive.extractfile(member) for member in archive.getmembers()
                     if member.isfile()}
            contents = {name: handle.read() for name, handle in files.items() if handle is not None}
    except (OSError, tarfile.TarError) as error:
        raise WasmBundleError(f"{path}: not a readable bundle ({error})") from error
    if "policy.wasm" not in contents:
        raise WasmBundleError(f"{path}: no policy.wasm (build it with `opa build -t wasm -e ig/ctx/decision`)")
    try:
        data = json.loads(contents.get("data.json", b"{}"))
    except ValueError as error:
        raise WasmBundleError(f"{path}: data.json is not JSON") from error
    try:
        revision = json.loads(contents.get(".manifest", b"{}")).get("revision", "")
    except (ValueError, AttributeError) as error:
        raise WasmBundleError(f"{path}: .manifest is not a JSON object") from error
    if require_revision and not (isinstance(revision, str) and revision.startswith("sha256:")):
        raise WasmBundleError(f"{path}: no policy revision in its manifest (build it with `ig-policy wasm-build`)")
    return WasmBundle(contents["policy.wasm"], data, str(revision))


class WasmAbort(Exception):
    """The module called opa_abort or trapped (an internal error inside the compiled policy)."""


def _uleb(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def data_end(module: bytes) -> int:
    """Where the module's active data segments end in memory (their largest i32.const offset + size): the binary's
    data section (id 11), read as the WebAssembly spec lays it out. 0 when there is none."""
    end, at = 0, 8  # past the magic and version
    while at < len(module):
        section, at = module[at], at + 1
        size, at = _uleb(module, at)
        if section == 11:
            count, cursor = _uleb(module, at)
            for _ in range(count):
                kind, cursor = _uleb(module, cursor)
                if kind == 1:  # passive: not placed at instantiation
                    length, cursor = _uleb(module, cursor)
                    cursor += length
                    continue
                if kind == 2:  # active with an explicit memory index
                    _, cursor = _uleb(module, cursor)
                if module[cursor] != 0x41:  # i32.const: the only offset OPA emits; anything else is not ours to guess
                    raise WasmBundleError("policy.wasm: a data segment's offset is not a constant")
                offset, cursor = _uleb(module, cursor + 1)  # non-negative offsets only (a signed LEB128 otherwise)
                cursor += 1  # the expression's end
                length, cursor = _uleb(module, cursor)
                cursor += length
                end = max(end, offset + length)
        at += size
    return end


class WasmPolicy:
    """One instance of the compiled policy, its data loaded once; ``evaluate`` answers like OPA's
    ``POST /v1/data/<entrypoint>`` body (``{"result": ...}``, ``{}`` when undefined) or raises."""

    def __init__(self, bundle: WasmBundle, entrypoint: str = "ig/ctx/decision",
                 builtins: dict[str, Callable[..., Any]] | None = None) -> None:
        self._engine = wasmtime.Engine()
        self._store = wasmtime.Store(self._engine)
        module = wasmtime.Module(self._engine, bundle.module)
        # The memory the module imports must hold its data segments from the start. OPA declares a minimum of two
        # pages whatever the policy's size (its SDKs start with more), so the pages come from where the module's
        # data ends; too few traps at instantiation.
        imported = next((item.type for item in module.imports
                         if item.module == "env" and item.name == "memory"), None)
        declared = imported.limits.min if isinstance(imported, wasmtime.MemoryType) else 2
        pages = max(2, declared, data_end(bundle.module) // _PAGE + 2)
        self._memory = wasmtime.Memory(self._store, wasmtime.MemoryType(wasmtime.Limits(pages, None)))
        linker = wasmtime.Linker(self._engine)
        linker.define(self._store, "env", "memory", self._memory)
        self._host = RawHostFunctions(self._store)
        self._host.define(linker, "env", "opa_abort", 1, 0, self._abort)
        for arity in range(5):
            self._host.define(linker, "env", f"opa_builtin{arity}", arity + 2, 1, self._call_builtin)
        exports = linker.instantiate(self._store, module).exports(self._store)
        major = exports["opa_wasm_abi_version"].value(self._store)  # type: ignore[union-attr]
        minor = exports["opa_wasm_abi_minor_version"].value(self._store)  # type: ignore[union-attr]
        if (major, minor) < (1, 2):
            raise WasmBundleError(f"Wasm ABI {major}.{minor}: opa_eval needs 1.2 or later")
        function = {name: RawI32Function(self._store, exports[name])  # type: ignore[arg-type]
                    for name in ("opa_eval", "opa_malloc", "opa_json_parse", "opa_json_dump", "opa_heap_ptr_get",
                                 "entrypoints", "builtins")}
        self._opa_eval, self._malloc = function["opa_eval"], function["opa_malloc"]
        self._json_parse, self._json_dump = function["opa_json_parse"], function["opa_json_dump"]
        entrypoints = self._dump_json(function["entrypoints"]())
        if entrypoint not in entrypoints:
            raise WasmBundleError(f"the module has no entrypoint {entrypoint!r} (it has {sorted(entrypoints)})")
        self._entrypoint = int(entrypoints[entrypoint])
        implementations = builtins if builtins is not None else BUILTINS
        # Builtin ids the module calls, mapped to our implementations; one we lack answers CannotAnswer when called.
        self.builtins_wanted: dict[str, int] = dict(self._dump_json(function["builtins"]()))
        self.builtins_missing = sorted(set(self.builtins_wanted) - set(implementations))
        self._builtins = {number: implementations.get(name) for name, number in self.builtins_wanted.items()}
        self._builtin_names = {number: name for name, number in self.builtins_wanted.items()}
        self._answers: dict[tuple[int, ...] | tuple[Any, ...], bytes] = {}
        # Builtins' answers are written here and parsed from here (opa_json_parse copies what it reads), so an
        # answer costs one call into the module, not an allocation and a parse.
        self._scratch = function["opa_malloc"](_SCRATCH)
        self._data = self._parse_json(json.dumps(bundle.data).encode())
        self._heap_base = function["opa_heap_ptr_get"]()

    def _read_cstring(self, address: int) -> bytes:
        if not 0 < address < self._memory.data_len(self._store):
            raise CannotAnswer("the module answered an address outside its memory")
        base = ctypes.addressof(self._memory.data_ptr(self._store).contents)
        return ctypes.string_at(base + address)

    def _dump_json(self, value_address: int) -> Any:
        return json.loads(self._read_cstring(self._json_dump(value_address)))

    def _write(self, text: bytes, address: int) -> None:
        if address + len(text) > self._memory.data_len(self._store):
            raise CannotAnswer("no room in the module's memory")
        ctypes.memmove(ctypes.addressof(self._memory.data_ptr(self._store).contents) + address, text, len(text))

    def _parse_json(self, text: bytes) -> int:
        address = self._scratch if len(text) <= _SCRATCH else self._malloc(len(text))
        self._write(text, address)
        value = self._json_parse(address, len(text))
        if value == 0:
            raise CannotAnswer("the module could not parse a value")
        return value

    def _abort(self, address: int) -> None:
        raise WasmAbort(self._read_cstring(address).decode(errors="replace"))

    def _call_builtin(self, number: int, _context: int, *arguments: int) -> int:
        implementation = self._builtins.get(number)
        if implementation is None:
            raise CannotAnswer(f"builtin {self._builtin_names.get(number, number)} is not implemented here")
        # The same arguments get the same answer (these builtins are pure): remembered as the JSON text to parse.
        key = (number, *(self._read_cstring(self._json_dump(address)) for address in arguments))
        answer = self._answers.get(key)
        if answer is None:
            try:
                result = implementation(*(json.loads(text) for text in key[1:]))
            except Undefined:
                result = _UNDEFINED
            answer = b"" if result is _UNDEFINED else json.dumps(result, ensure_ascii=False).encode()
            if len(self._answers) >= _REMEMBERED_ANSWERS:
                self._answers.clear()
            self._answers[key] = answer
        if not answer:
            return 0  # the compiled policy treats a builtin's null answer as undefined
        return self._parse_json(answer)

    def evaluate(self, policy_input: Any) -> Any:
        text = json.dumps(policy_input, ensure_ascii=False).encode()
        input_at = self._heap_base
        heap_after = input_at + len(text)
        # Room for the input and, generously, what evaluation allocates; the module grows memory itself too.
        needed_pages = (heap_after + 4 * _PAGE) // _PAGE + 1
        current = self._memory.size(self._store)
        if needed_pages > current:
            self._memory.grow(self._store, needed_pages - current)
        self._write(text, input_at)
        self._host.failure = None
        try:
            result_at = self._opa_eval(0, self._entrypoint, self._data, input_at, len(text), heap_after, _JSON)
        except (wasmtime.WasmtimeError, wasmtime.Trap) as error:
            # A host function's own exception (CannotAnswer, or a bug) is the cause; else the module trapped.
            failure, self._host.failure = self._host.failure, None
            if failure is not None:
                raise failure from error
            raise WasmAbort(f"the module trapped: {error}") from error
        results = json.loads(self._read_cstring(result_at))
        if not results:
            return {}
        if len(results) != 1 or "result" not in results[0]:
            raise CannotAnswer("the module's result set is not one document")
        return {"result": results[0]["result"]}
