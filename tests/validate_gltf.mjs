// Print the Khronos glTF validator's JSON report for one .glb file.
// usage: NODE_PATH=.cache/node/node_modules node tests/validate_gltf.mjs FILE.glb
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(import.meta.url);
const roots = [process.env.GLTF_VALIDATOR_DIR, path.resolve(path.dirname(new URL(import.meta.url).pathname), "../.cache/node/node_modules")];
let validator = null;
for (const root of roots.filter(Boolean)) {
  try { validator = require(path.join(root, "gltf-validator")); break; } catch (e) { /* next */ }
}
if (!validator) validator = require("gltf-validator");

const file = process.argv[2];
const report = await validator.validateBytes(new Uint8Array(readFileSync(file)), {
  uri: path.basename(file),
  maxIssues: 100,
  writeTimestamp: false,
});
process.stdout.write(JSON.stringify(report));
