"""ONNX's own checks of a file tapegrad exported (tests/onnx.sh).

usage: onnx_check.py FILE OPS [-OP...] [OP=COUNT...]
  OPS: comma-separated op types the graph must hold; -OP: an op type it must not hold; OP=COUNT: how
  many nodes of that type it holds.
Checks: IR version 8, opset 17 of the default domain, onnx.checker.check_model(full_check=True),
strict shape inference, and that the shapes inference gives every value (from the graph's
inputs and initializers alone) equal the value_info and output shapes tapegrad wrote, the
batch as the symbolic "N"."""
import sys

import onnx


def dims(t):
    """A type's shape as a list of ints and names (None: unknown, or a name inference made up, as it does
    for the batch after a Resize by scales: "unk__0")."""
    out = []
    for d in t.tensor_type.shape.dim:
        named = d.HasField("dim_param") and not d.dim_param.startswith("unk__")
        out.append(d.dim_value if d.HasField("dim_value") else d.dim_param if named else None)
    return out


def main():
    path, want = sys.argv[1], [op for op in sys.argv[2].split(",") if op]
    banned = [a[1:] for a in sys.argv[3:] if a.startswith("-")]
    counts = {a.split("=")[0]: int(a.split("=")[1]) for a in sys.argv[3:] if "=" in a}
    m = onnx.load(path)
    errors = []
    if m.ir_version != 8:
        errors.append(f"ir_version {m.ir_version}, not 8")
    opsets = {o.domain: o.version for o in m.opset_import}
    if opsets != {"": 17}:
        errors.append(f"opset_import {opsets}, not {{'': 17}}")
    onnx.checker.check_model(m, full_check=True)
    ops = {n.op_type for n in m.graph.node}
    errors += [f"no {op} node" for op in want if op not in ops]
    errors += [f"a {op} node" for op in banned if op in ops]
    for op, k in counts.items():
        got_k = sum(n.op_type == op for n in m.graph.node)
        if got_k != k:
            errors.append(f"{got_k} {op} nodes, not {k}")

    written = {v.name: dims(v.type) for v in list(m.graph.value_info) + list(m.graph.output)}
    if written.get("output", [None])[0] != "N" or dims(m.graph.input[0].type)[0] != "N":
        errors.append("the batch of input and output is not the symbolic N")
    bare = onnx.ModelProto()
    bare.CopyFrom(m)
    del bare.graph.value_info[:]
    for o in bare.graph.output:
        o.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(bare, check_type=True, strict_mode=True, data_prop=True)
    got = {v.name: dims(v.type) for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    compared = 0
    for name, shape in written.items():
        if name not in got:
            errors.append(f"inference gives no shape for {name}")
            continue
        other = got[name]
        # a dimension inference cannot name is left out; every other must agree
        same = len(other) == len(shape) and all(b is None or a == b for a, b in zip(shape, other))
        if not same:
            errors.append(f"{name}: tapegrad wrote {shape}, inference gives {other}")
        compared += 1
    unknown = sum(d is None for s in got.values() for d in s)
    print(f"{path}: check_model(full_check) and strict shape inference pass; {len(m.graph.node)} nodes "
          f"({', '.join(sorted(ops))}), {len(m.graph.initializer)} initializers; {compared} shapes equal "
          f"inference's ({unknown} dimensions it left unnamed)")
    if compared < len(m.graph.node) // 2:
        errors.append(f"only {compared} shapes written for {len(m.graph.node)} nodes")
    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
