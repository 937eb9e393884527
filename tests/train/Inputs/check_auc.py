"""argv: data.csv probs.npy train_output. Recomputes the ROC AUC of the test split (the last
10% of the rows) from the probabilities `nnc run` wrote, by counting pairs, and compares it
with the auc of nnc train's test line."""
import struct
import sys

rows = [line.split(",") for line in open(sys.argv[1]).read().split("\n")[1:] if line]
test = rows[len(rows) - len(rows) // 10:]
raw = open(sys.argv[2], "rb").read()
hlen = struct.unpack("<H", raw[8:10])[0]
data = raw[10 + hlen:]
probs = struct.unpack("<%df" % (len(data) // 4), data)
scores = [probs[2 * i + 1] for i in range(len(test))]
labels = [int(r[2]) for r in test]
pos = [s for s, l in zip(scores, labels) if l == 1]
neg = [s for s, l in zip(scores, labels) if l == 0]
auc = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
line = [l for l in open(sys.argv[3]).read().split("\n") if l.startswith("test: ")][-1]
got = float(dict(kv.split("=") for kv in line[6:].split())["auc"])
if abs(got - auc) > 1e-4:
    sys.exit("auc: nnc printed %g, counting pairs gives %g" % (got, auc))
print("auc agrees: %.4f" % auc)
