// ONNX Runtime's side of the ONNX test (tests/onnx.sh): runs exported models on images and
// compares their outputs with tapegrad's evaluation.
//   node onnx_run.js TEST_X N NAME:MODEL:EXPECTED...
// TEST_X holds N images (float32, N x 1 x 28 x 28), EXPECTED tapegrad's outputs (N x 10). Each
// model runs on all N images at once and on the first 7 (the batch is symbolic), each node as
// written; prints the largest |difference| per model and fails above 1e-4.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

const TOL = 1e-4;

function floats(path) {
  const b = fs.readFileSync(path);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

async function run(session, x, n) {
  const input = new ort.Tensor('float32', x.subarray(0, n * 784), [n, 1, 28, 28]);
  const out = await session.run({input});
  return out.output;
}

async function main() {
  const [xPath, nText, ...models] = process.argv.slice(2);
  const n = Number(nText), x = floats(xPath);
  if (!(n > 7) || x.length !== n * 784) throw new Error(`${xPath}: want ${n} images of 784 floats`);
  let bad = 0;
  for (const spec of models) {
    const [name, model, expected] = spec.split(':');
    const want = floats(expected);
    // graph optimisations off: each node runs as written (ONNX Runtime's own Conv+BatchNormalization
    // fusion would otherwise fold the plain file as tapegrad folds the other)
    const session = await ort.InferenceSession.create(model, {graphOptimizationLevel: 'disabled'});
    let worst = 0;
    for (const batch of [n, 7]) {
      const y = await run(session, x, batch);
      if (y.dims.join('x') !== `${batch}x10`) throw new Error(`${name}: output ${y.dims.join('x')}, want ${batch}x10`);
      for (let i = 0; i < batch * 10; i++) {
        const d = Math.abs(y.data[i] - want[i]);
        if (!(d <= worst)) worst = Number.isNaN(d) ? Infinity : d;
      }
    }
    const ok = worst <= TOL;
    if (!ok) bad++;
    console.log(`${name}: largest |ONNX Runtime - tapegrad| over ${n} images (and the first 7 alone) ` +
                `${worst.toExponential(2)} ${ok ? '<=' : '>'} ${TOL} (${model})`);
  }
  if (bad) throw new Error(`${bad} of ${models.length} models differ from tapegrad by more than ${TOL}`);
}

main().catch((e) => {
  console.error(`onnx_run: ${e.message}`);
  process.exit(1);
});
