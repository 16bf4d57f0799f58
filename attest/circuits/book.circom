pragma circom 2.1.6;
// Templates of predliq's attestation of a venue's book. Every node of the tree, batch or
// aggregate, publishes one commitment: Poseidon(salt, root, sums[S]), where sums are, in order,
//   0 accounts, 1 collateral, 2 deficit (bad debt), 3 maintenance requirement,
//   4 initial requirement, 5 accounts below maintenance, 6 their notional, 7 their gap to
//   maintenance, 8.. notional per market
// (S = 8 + markets). The salt keeps a node's sums hidden; the proofs show that each commitment
// holds the sums of the leaves under it. Amounts are quote quantums (1e-6 of the quote currency).
include "circomlib/circuits/poseidon.circom";
include "circomlib/circuits/bitify.circom";
include "circomlib/circuits/comparators.circom";

// The commitment of a node.
template Commit(S) {
    signal input salt;
    signal input root;
    signal input sums[S];
    signal output out;
    component h = Poseidon(2 + S);
    h.inputs[0] <== salt;
    h.inputs[1] <== root;
    for (var s = 0; s < S; s++) { h.inputs[2 + s] <== sums[s]; }
    out <== h.out;
}

// One account's leaf: Poseidon(salt, id + present * 2^IDB, packed amounts, packed notionals).
// Packing B-bit amounts four to a field element keeps the hash small; it is injective because
// every amount is range-checked to B bits and 4 * B < 253.
template LeafHash(M, B, IDB) {
    signal input salt;
    signal input id;
    signal input present;
    signal input amounts[4];
    signal input notional[M];
    signal output out;
    var P = (M + 3) \ 4;
    component h = Poseidon(3 + P);
    h.inputs[0] <== salt;
    h.inputs[1] <== id + present * (1 << IDB);
    var packed = 0;
    for (var r = 0; r < 4; r++) { packed += amounts[r] * (1 << (r * B)); }
    h.inputs[2] <== packed;
    for (var j = 0; j < P; j++) {
        var pn = 0;
        for (var r = 0; r < 4; r++) {
            if (4 * j + r < M) { pn += notional[4 * j + r] * (1 << (r * B)); }
        }
        h.inputs[3 + j] <== pn;
    }
    out <== h.out;
}

// The root of a 4-ary Poseidon Merkle tree over N = 4^L leaf hashes.
template Merkle4(N) {
    signal input leaves[N];
    signal output root;
    var nodes = (N - 1) \ 3;
    signal layer[N + nodes];
    component h[nodes];
    for (var i = 0; i < N; i++) { layer[i] <== leaves[i]; }
    var read = 0;
    var write = N;
    var w = N;
    var n = 0;
    while (w > 1) {
        for (var j = 0; j < w \ 4; j++) {
            h[n] = Poseidon(4);
            for (var r = 0; r < 4; r++) { h[n].inputs[r] <== layer[read + 4 * j + r]; }
            layer[write + j] <== h[n].out;
            n++;
        }
        read += w;
        write += w \ 4;
        w = w \ 4;
    }
    root <== layer[N + nodes - 1];
}

// A batch of N accounts (N = 4^L), ids strictly increasing, padding leaves (present = 0) all
// zero and at the end. Public: the batch's Merkle root (an account's inclusion path ends here),
// its commitment, and its first and last account id (batches are ordered by id, so an account
// cannot appear in two batches).
template Batch(N, M, B, IDB) {
    var S = 8 + M;
    signal input salt[N];
    signal input id[N];
    signal input present[N];
    signal input collateral[N];
    signal input deficit[N];
    signal input maintenance[N];
    signal input initial[N];
    signal input notional[N][M];
    signal input batchSalt;
    signal output root;
    signal output commitment;
    signal output firstId;
    signal output lastId;

    component amountBits[N][4];
    component notionalBits[N][M];
    component idBits[N];
    component order[N];
    component short[N];
    component owes[N];
    component leaf[N];
    signal lackOrOwe[N];
    signal below[N];
    signal belowNotional[N];
    signal gap[N];
    signal last[N];
    var sums[S];
    for (var s = 0; s < S; s++) { sums[s] = 0; }
    present[0] === 1;
    for (var i = 0; i < N; i++) {
        present[i] * (present[i] - 1) === 0;
        if (i > 0) { present[i] * (1 - present[i - 1]) === 0; }
        // Range: every amount in [0, 2^B), so no sum can wrap the field and no negative
        // balance hides inside a total.
        amountBits[i][0] = Num2Bits(B); amountBits[i][0].in <== collateral[i];
        amountBits[i][1] = Num2Bits(B); amountBits[i][1].in <== deficit[i];
        amountBits[i][2] = Num2Bits(B); amountBits[i][2].in <== maintenance[i];
        amountBits[i][3] = Num2Bits(B); amountBits[i][3].in <== initial[i];
        var gross = 0;
        for (var k = 0; k < M; k++) {
            notionalBits[i][k] = Num2Bits(B); notionalBits[i][k].in <== notional[i][k];
            gross += notional[i][k];
        }
        idBits[i] = Num2Bits(IDB); idBits[i].in <== id[i];
        // Equity is collateral - deficit: at most one of them is non-zero.
        collateral[i] * deficit[i] === 0;
        // A padding leaf holds nothing (the sum of range-checked amounts is zero only if each is).
        (1 - present[i]) * (collateral[i] + deficit[i] + maintenance[i] + initial[i] + gross + id[i]) === 0;
        if (i > 0) {
            order[i] = LessThan(IDB);
            order[i].in[0] <== id[i - 1];
            order[i].in[1] <== id[i];
            present[i] * (1 - order[i].out) === 0;
        }
        // Below maintenance: equity < maintenance, i.e. collateral < maintenance or a deficit.
        short[i] = LessThan(B);
        short[i].in[0] <== collateral[i];
        short[i].in[1] <== maintenance[i];
        owes[i] = IsZero();
        owes[i].in <== deficit[i];
        lackOrOwe[i] <== short[i].out * (1 - owes[i].out);
        below[i] <== short[i].out + (1 - owes[i].out) - lackOrOwe[i];
        belowNotional[i] <== below[i] * gross;
        gap[i] <== below[i] * (maintenance[i] - collateral[i] + deficit[i]);
        if (i < N - 1) {
            last[i] <== id[i] * (present[i] - present[i + 1]);
        } else {
            last[i] <== id[i] * present[i];
        }
        leaf[i] = LeafHash(M, B, IDB);
        leaf[i].salt <== salt[i];
        leaf[i].id <== id[i];
        leaf[i].present <== present[i];
        leaf[i].amounts[0] <== collateral[i];
        leaf[i].amounts[1] <== deficit[i];
        leaf[i].amounts[2] <== maintenance[i];
        leaf[i].amounts[3] <== initial[i];
        for (var k = 0; k < M; k++) { leaf[i].notional[k] <== notional[i][k]; }
        sums[0] += present[i];
        sums[1] += collateral[i];
        sums[2] += deficit[i];
        sums[3] += maintenance[i];
        sums[4] += initial[i];
        sums[5] += below[i];
        sums[6] += belowNotional[i];
        sums[7] += gap[i];
        for (var k = 0; k < M; k++) { sums[8 + k] += notional[i][k]; }
    }
    component tree = Merkle4(N);
    for (var i = 0; i < N; i++) { tree.leaves[i] <== leaf[i].out; }
    root <== tree.root;
    component commit = Commit(S);
    commit.salt <== batchSalt;
    commit.root <== root;
    for (var s = 0; s < S; s++) { commit.sums[s] <== sums[s]; }
    commitment <== commit.out;
    firstId <== id[0];
    var lastSum = 0;
    for (var i = 0; i < N; i++) { lastSum += last[i]; }
    lastId <== lastSum;
}

// An aggregate of up to K child nodes (batches or aggregates), used slots first. Public: the
// children's commitments (0 for an unused slot) and its own commitment, whose root is the
// Poseidon hash of the children's commitments and whose sums are the children's sums added.
template Aggregate(K, M) {
    var S = 8 + M;
    signal input child[K];
    signal input used[K];
    signal input childSalt[K];
    signal input childRoot[K];
    signal input childSums[K][S];
    signal input salt;
    signal output commitment;

    component opened[K];
    signal counted[K][S];
    var sums[S];
    for (var s = 0; s < S; s++) { sums[s] = 0; }
    used[0] === 1;
    for (var k = 0; k < K; k++) {
        used[k] * (used[k] - 1) === 0;
        if (k > 0) { used[k] * (1 - used[k - 1]) === 0; }
        opened[k] = Commit(S);
        opened[k].salt <== childSalt[k];
        opened[k].root <== childRoot[k];
        for (var s = 0; s < S; s++) { opened[k].sums[s] <== childSums[k][s]; }
        child[k] === used[k] * opened[k].out;
        for (var s = 0; s < S; s++) {
            counted[k][s] <== used[k] * childSums[k][s];
            sums[s] += counted[k][s];
        }
    }
    component root = Poseidon(K);
    for (var k = 0; k < K; k++) { root.inputs[k] <== child[k]; }
    component commit = Commit(S);
    commit.salt <== salt;
    commit.root <== root.out;
    for (var s = 0; s < S; s++) { commit.sums[s] <== sums[s]; }
    commitment <== commit.out;
}
