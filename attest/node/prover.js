// predliq's bridge to circomlibjs and snarkjs. Python runs it as
//   node prover.js COMMAND < request.json > reply.json
// COMMAND is one of:
//   poseidon  {"inputs": [[decimal, ...], ...]}          -> [decimal, ...]
//   prove     {"jobs": [{"wasm", "zkey", "input", "out"}]} -> [{"out", "ms"}]; writes each proof
//   verify    {"items": [{"vkey", "proof"}], "hashes": [[decimal, ...]],
//              "climbs": [{"leaf": [decimal, ...], "index", "path": [[decimal x3], ...]}]}
//             -> {"proofs": [{"ok", "reason"}], "hashes": [decimal], "climbs": [decimal]}
//             (a climb hashes a leaf, then each level of a 4-ary Merkle path, bottom up)
// Progress goes to stderr, one line per proof. A failure prints one line to stderr and exits 1.
"use strict";
const fs = require("fs");
const snarkjs = require("snarkjs");
const { buildPoseidon } = require("circomlibjs");

async function poseidon(request) {
  const hash = await buildPoseidon();
  return request.inputs.map((inputs) => hash.F.toString(hash(inputs.map((x) => BigInt(x)))));
}

async function prove(request) {
  const zkeys = new Map();
  const replies = [];
  for (const job of request.jobs) {
    const started = Date.now();
    if (!zkeys.has(job.zkey)) {
      // One read of the proving key per process, not one per proof.
      zkeys.set(job.zkey, { type: "mem", data: new Uint8Array(fs.readFileSync(job.zkey)) });
    }
    const input = JSON.parse(fs.readFileSync(job.input, "utf8"));
    const witness = { type: "mem" };
    try {
      await snarkjs.wtns.calculate(input, job.wasm, witness);
    } catch (err) {
      throw new Error(`${job.input}: the circuit rejects this input (${firstLine(err)})`);
    }
    const { proof, publicSignals } = await snarkjs.groth16.prove(zkeys.get(job.zkey), witness);
    const tmp = `${job.out}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify({ proof, publicSignals }));
    fs.renameSync(tmp, job.out);
    const ms = Date.now() - started;
    process.stderr.write(`proved ${job.out} in ${ms} ms\n`);
    replies.push({ out: job.out, ms });
  }
  return replies;
}

async function verify(request) {
  const keys = new Map();
  const replies = [];
  for (const item of request.items) {
    if (!keys.has(item.vkey)) keys.set(item.vkey, JSON.parse(fs.readFileSync(item.vkey, "utf8")));
    let reply;
    try {
      const { proof, publicSignals } = JSON.parse(fs.readFileSync(item.proof, "utf8"));
      const ok = await snarkjs.groth16.verify(keys.get(item.vkey), publicSignals, proof, nullLogger);
      reply = { ok, reason: ok ? "" : "the proof does not verify" };
    } catch (err) {
      reply = { ok: false, reason: `unreadable proof (${firstLine(err)})` };
    }
    replies.push(reply);
  }
  const hash = await buildPoseidon();
  const h = (xs) => hash(xs.map((x) => BigInt(x)));
  const climbs = (request.climbs || []).map((c) => {
    let current = h(c.leaf);
    let index = Number(c.index);
    for (const level of c.path) {
      const group = level.map((x) => BigInt(x));
      group.splice(index % 4, 0, current);
      current = hash(group);
      index = Math.floor(index / 4);
    }
    return hash.F.toString(current);
  });
  return {
    proofs: replies,
    hashes: (request.hashes || []).map((xs) => hash.F.toString(h(xs))),
    climbs,
  };
}

const nullLogger = { info() {}, warn() {}, debug() {}, error() {} };

function firstLine(err) {
  return String(err && err.message ? err.message : err).split("\n")[0];
}

async function main() {
  const command = process.argv[2];
  const handlers = { poseidon, prove, verify };
  if (!handlers[command]) throw new Error(`unknown command ${command}`);
  const request = JSON.parse(fs.readFileSync(0, "utf8"));
  const reply = await handlers[command](request);
  // A write to a pipe completes asynchronously: exit only once it has (an early exit cut
  // replies of more than 64 kB).
  await new Promise((resolve) => process.stdout.write(JSON.stringify(reply), resolve));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`error: ${firstLine(err)}\n`);
    process.exit(1);
  },
);
