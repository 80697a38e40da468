"""Where supervised STDP loses accuracy on the spiking network (docs/results.md, seed 003): train a spec for
its epochs, then compare the network's own spike-count readout with readouts of its hidden spike counts —
a nearest class mean (L1-normalised templates), the trained W_out as templates, and a logistic regression —
and count the ties of the output spike counts.

Run: ``PYTHONPATH=src .venv/bin/python experiments/snn_readout.py '{"model": {...}, "rule": ..., ...}'``
(the spec as JSON; docs/results.md gives the one used).
"""
import json
import sys

import torch

from chiploop.experiments.spec import experiment_from_data
from chiploop.experiments.train import Run
torch.set_num_threads(1)
spec = experiment_from_data(json.loads(sys.argv[1]))
r = Run.build(spec)
for ep in range(1, spec.epochs + 1):
    r.epoch(ep)
    row = r.evaluate(); print(ep, round(row['test_acc'],3), round(row['train_acc'],3), flush=True)
def counts(split):
    x, y = r.task.split(split)
    with torch.no_grad(): tr = r.network.unroll(x)
    return tr.states['s_h'].sum(0), tr.output, y
htr, otr, ytr = counts('train'); hte, ote, yte = counts('test')
C = torch.stack([htr[ytr == c].mean(0) for c in range(10)])
Cn = C / C.sum(1, keepdim=True)
print('centroid-dot acc', ((hte @ Cn.T).argmax(1) == yte).float().mean().item())
Wout = r.network.chip.crossbars['W_out'].weights()
print('W_out-dot acc', ((hte @ Wout.T).argmax(1) == yte).float().mean().item(), 'net acc', (ote.argmax(1) == yte).float().mean().item(), 'ties', ((ote == ote.max(1, keepdim=True).values).sum(1) > 1).float().mean().item())
from sklearn.linear_model import LogisticRegression
tb = ote + (hte @ Wout.T) / (4 * (hte @ Wout.T).abs().amax(1, keepdim=True).clamp(min=1e-12))
print('count+current acc', (tb.argmax(1) == yte).float().mean().item())
print('logreg on counts', LogisticRegression(max_iter=2000).fit(htr.numpy(), ytr.numpy()).score(hte.numpy(), yte.numpy()))
print('active', (hte > 0).float().sum(1).mean().item(), 'spikes', hte.sum(1).mean().item(), 'out spikes', ote.sum(1).mean().item())
