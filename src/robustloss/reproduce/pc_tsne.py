"""``pc-fig3`` (P7): t-SNE of LeNet-5's feature layer with the successful FGSM (eps 0.3) adversarial examples, CE
vs PC (the PC paper, Fig. 3, caption l.251, text l.266-270).

The paper's figure holds no numbers, so the recipe measures the figure's observations:

* *CE adversarial examples land in the nearest class, the most probable false class* (l.268-270): the share of
  successful examples predicted as the clean point's rank-2 class (:func:`robustloss.reproduce.pc.rank_of`), and
  the share lying inside the cluster of the class they are predicted as (:func:`in_predicted_cluster`: most of
  their ``k`` nearest clean points in the embedding carry that label);
* *PC classes have clear boundaries with minimal overlap, CE's clean points lie across boundaries* (l.266):
  :func:`knn_purity` of the clean points, in the embedding and in the feature space;
* *PC adversarial examples stay near the centre, where hard samples lie* (l.270): :func:`radius_ratio`, the
  median distance of the adversarial features to the centre of the clean features over that of the clean
  points (computed in the feature space: t-SNE does not keep global distances).

The models are ``pc-table1``'s CE and PC (paper's recipe) models at the same scale, through the run cache.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from robustloss import datasets
from robustloss.errors import UserError
from robustloss.evaluation.report import markdown_table
from robustloss.reproduce.framework import Claim, Context, Outcome, Recipe, pct, pyplot
from robustloss.reproduce.papers.pc_paper import PC_PAPER
from robustloss.reproduce.pc import CE_MAIN, PC_MAIN, PC_SCALES, _models_of, rank_of
from robustloss.runs import load_run

#: the paper's FGSM budget of Fig. 3 (caption l.251)
FIG3_EPS = 0.3
#: test points embedded per scale (the paper does not say how many): clean points, then their successful attacks
FIG3_N = {"smoke": 64, "cpu": 2000, "paper": 5000}
#: neighbours of :func:`knn_purity` / :func:`in_predicted_cluster` (ours; the paper measures nothing)
K = 10


def tsne_2d(features: np.ndarray, *, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000) -> np.ndarray:
    """A 2-d t-SNE embedding of ``features`` (N x d) with scikit-learn (Barnes-Hut, PCA initialisation, learning rate
    "auto", on one thread); ``perplexity`` is capped at (N - 1) / 3 for small N.  scikit-learn is the optional
    ``extras`` dependency: a :class:`UserError` says how to install it."""
    try:
        from sklearn.manifold import TSNE
        from threadpoolctl import threadpool_limits
    except ImportError:
        raise UserError("pc-fig3 needs scikit-learn for its t-SNE: pip install 'robustloss[extras]' "
                        "(or pip install 'scikit-learn>=1.3')") from None
    iters = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"   # renamed in 1.5
    tsne = TSNE(n_components=2, perplexity=min(perplexity, (len(features) - 1) / 3), init="pca",
                learning_rate="auto", random_state=seed, n_jobs=1, **{iters: max_iter})
    with threadpool_limits(limits=1):
        return np.asarray(tsne.fit_transform(features.astype(np.float32)), dtype=np.float64)


def _neighbours(points: torch.Tensor, reference: torch.Tensor, k: int, exclude_self: bool) -> torch.Tensor:
    """Indices (into ``reference``) of the ``k`` nearest reference points of each point."""
    dist = torch.cdist(points.double(), reference.double())
    if exclude_self:
        dist.fill_diagonal_(float("inf"))
    return dist.topk(min(k, reference.shape[0] - int(exclude_self)), largest=False).indices


def knn_purity(points: torch.Tensor, labels: torch.Tensor, k: int = K) -> float:
    """The mean share of each point's ``k`` nearest other points that carry its label (1 = classes do not overlap)."""
    nb = _neighbours(points, points, k, exclude_self=True)
    return float((labels[nb] == labels[:, None]).double().mean())


def in_predicted_cluster(adv: torch.Tensor, predicted: torch.Tensor, clean: torch.Tensor, clean_labels: torch.Tensor,
                         k: int = K) -> float | None:
    """The share of adversarial points most of whose ``k`` nearest clean points carry the class the adversarial
    point is predicted as (the point sits inside that class's cluster); ``None`` without adversarial points."""
    if len(adv) == 0:
        return None
    nb = _neighbours(adv, clean, k, exclude_self=False)
    agree = (clean_labels[nb] == predicted[:, None]).double().mean(dim=1)
    return float((agree > 0.5).double().mean())


def radius_ratio(adv: torch.Tensor, clean: torch.Tensor) -> float | None:
    """Median distance of ``adv`` to the mean of ``clean`` over the median distance of ``clean`` to it (< 1: the
    adversarial points lie nearer the centre than a typical clean point); ``None`` without adversarial points."""
    if len(adv) == 0:
        return None
    centre = clean.double().mean(dim=0)
    return float((adv.double() - centre).norm(dim=1).median() / (clean.double() - centre).norm(dim=1).median())


def _features(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature-layer outputs z and softmax probabilities of ``x`` (batches of 1000, no gradient)."""
    dev = next(model.parameters()).device
    feats, probs = [], []
    with torch.no_grad():
        for i in range(0, len(x), 1000):
            z = model.features(x[i:i + 1000].to(dev))
            feats.append(z.cpu())
            probs.append(torch.softmax(model.objective.logits(z).double(), dim=1).cpu())
    return torch.cat(feats), torch.cat(probs)


def _study(ctx: Context, variant: str, run_dir: Any, x: torch.Tensor, y: torch.Tensor,
           max_iter: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from robustloss.attacks import ATTACKS

    model = load_run(run_dir, device=ctx.device)
    feats, probs = _features(model, x)
    correct = probs.argmax(dim=1) == y
    result = ATTACKS.build("fgsm", {"eps": FIG3_EPS, "loss": "ce"}, model=model).run(x[correct], y[correct])
    ok = result.success.cpu()
    adv_x = result.adversarial.cpu()[ok]
    adv_pred = result.prediction.cpu()[ok]
    adv_src = y[correct][ok]
    adv_feats, _ = _features(model, adv_x)
    ctx.log(f"{variant}: t-SNE of {len(feats)} clean + {len(adv_feats)} adversarial feature vectors")
    emb = torch.from_numpy(tsne_2d(torch.cat([feats, adv_feats]).numpy(), max_iter=max_iter))
    clean_emb, adv_emb = emb[:len(feats)], emb[len(feats):]
    ranks = rank_of(probs[correct][ok], adv_pred)
    stats = {"run": str(run_dir), "n": len(x), "correct": int(correct.sum()), "successful": int(ok.sum()),
             "success_rate": float(ok.double().mean()) if len(ok) else 0.0,
             "rank2_share": float((ranks == 2).double().mean()) if len(ranks) else None,
             "knn_purity_embedding": knn_purity(clean_emb, y), "knn_purity_features": knn_purity(feats, y),
             "in_predicted_cluster": in_predicted_cluster(adv_emb, adv_pred, clean_emb, y),
             "radius_ratio_features": radius_ratio(adv_feats, feats),
             "radius_ratio_embedding": radius_ratio(adv_emb, clean_emb),
             "feature_dim": int(feats.shape[1])}
    arrays = {"clean": clean_emb.numpy(), "labels": y.numpy(), "adv": adv_emb.numpy(), "adv_source": adv_src.numpy()}
    return stats, arrays


def _figure(ctx: Context, arrays: dict[str, dict[str, np.ndarray]], n: int, dataset: str) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 10.5))
    cmap = plt.get_cmap("tab10")
    letters = iter("abcd")
    for row, (variant, a) in enumerate(arrays.items()):
        name = "CE" if variant == CE_MAIN else "PC"
        for col, with_adv in enumerate((False, True)):
            ax = axes[row, col]
            ax.scatter(a["clean"][:, 0], a["clean"][:, 1], c=cmap(a["labels"] % 10), s=3, alpha=0.5 if with_adv
                       else 0.7, linewidths=0)
            if with_adv and len(a["adv"]):
                ax.scatter(a["adv"][:, 0], a["adv"][:, 1], c=cmap(a["adv_source"] % 10), marker="+", s=25,
                           linewidths=0.8)
            what = (f"+ {len(a['adv'])} successful FGSM eps {FIG3_EPS:g} (colour: true class)" if with_adv
                    else "clean test points (colour: class)")
            ax.set_title(f"({next(letters)}) {name}: {what}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [plt.Line2D([], [], ls="", marker="o", color=cmap(c), label=str(c)) for c in range(10)]
    fig.legend(handles=handles, loc="lower center", ncol=10, fontsize=8, title="class")
    fig.suptitle(f"t-SNE of the feature layer, {n} {dataset} test points ({ctx.scale} scale); rows: "
                 f"{CE_MAIN}, {PC_MAIN}")
    ctx.figure(fig, "fig3_tsne")


def _value(results: dict[str, Any], variant: str, key: str) -> float:
    value = results["models"][variant][key]
    if value is None:
        raise KeyError(f"{variant} {key} (no successful adversarial example)")
    return float(value)


def _fig3_run(ctx: Context) -> Outcome:
    s = PC_SCALES[ctx.scale]
    n = ctx.n_eval(FIG3_N[ctx.scale])
    x, y = datasets.load(s.dataset, "test", ctx.data_dir)
    x, y = x[:n], y[:n]
    max_iter = 250 if ctx.scale == "smoke" else 1000
    models: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for variant, run_dir in _models_of(ctx, s, (CE_MAIN, PC_MAIN)).items():
        models[variant], arrays[variant] = _study(ctx, variant, run_dir, x, y, max_iter)
    _figure(ctx, arrays, n, s.dataset)
    rows = []
    for variant, m in models.items():
        rows.append([variant, str(m["correct"]), f"{m['successful']} ({pct(m['success_rate'])}%)",
                     pct(m["rank2_share"]), pct(m["in_predicted_cluster"]), pct(m["knn_purity_embedding"]),
                     pct(m["knn_purity_features"]),
                     "-" if m["radius_ratio_features"] is None else f"{m['radius_ratio_features']:.2f}",
                     "-" if m["radius_ratio_embedding"] is None else f"{m['radius_ratio_embedding']:.2f}"])
    p4 = PC_PAPER.table("P4")
    sections = [
        "## Fig. 3: the feature layer under t-SNE, with the successful FGSM attacks\n\n"
        f"The paper's Fig. 3 (caption l.251, text l.266-270) shows LeNet-5 trained with CE (a, b) and with PC (c, d) "
        f"on MNIST; (b, d) add the successful FGSM attacks at eps {FIG3_EPS:g} ('+'). The figure holds no numbers; its "
        "observations are measured below. Ours: the first "
        f"{n} {s.dataset} test points through `pc-table1`'s {CE_MAIN} and {PC_MAIN} models ({s.t} + {s.t} epochs; "
        f"feature layer: the {models[CE_MAIN]['feature_dim']}-d z of LeNet-5), untargeted FGSM on CE at eps "
        f"{FIG3_EPS:g} on the correctly classified points, and one 2-d t-SNE per model of the clean and the "
        "successful adversarial feature vectors together (scikit-learn, perplexity 30, PCA initialisation, seed 0, "
        f"{max_iter} iterations; the paper states none of these). Neighbourhood measures use k = {K}.\n\n"
        + markdown_table(["model", "correct clean points", "successful FGSM 0.3 (success rate)",
                          "in the rank-2 (most probable false) class (%)",
                          "inside the cluster of the predicted class (%)", "clean k-NN purity, t-SNE (%)",
                          "clean k-NN purity, features (%)", "adversarial radius / clean radius, features",
                          "same, t-SNE"], rows)
        + f"\n\nFor scale: the paper's Table 1 (l.196) gives FGSM eps 0.3 accuracy CE {p4['CE']['FGSM 0.3']} and PC "
        f"{p4['PC']['FGSM 0.3']} on MNIST (ours: {pct(1 - models[CE_MAIN]['success_rate'])} and "
        f"{pct(1 - models[PC_MAIN]['success_rate'])} of the correctly classified points).\n"]

    def ce_rank2(results: dict[str, Any]) -> tuple[bool | None, str]:
        v = _value(results, CE_MAIN, "rank2_share")
        return v > 0.5, (f"{CE_MAIN}: {100 * v:.1f}% of the successful FGSM 0.3 examples are predicted as the "
                         "rank-2 class")

    def ce_cluster(results: dict[str, Any]) -> tuple[bool | None, str]:
        v = _value(results, CE_MAIN, "in_predicted_cluster")
        return v > 0.5, f"{CE_MAIN}: {100 * v:.1f}% lie inside the t-SNE cluster of their predicted class"

    def purity(results: dict[str, Any]) -> tuple[bool | None, str]:
        a, b = (_value(results, v, "knn_purity_embedding") for v in (PC_MAIN, CE_MAIN))
        fa, fb = (_value(results, v, "knn_purity_features") for v in (PC_MAIN, CE_MAIN))
        return a > b, (f"t-SNE k-NN purity PC {100 * a:.1f}% vs CE {100 * b:.1f}% (features: {100 * fa:.1f}% vs "
                       f"{100 * fb:.1f}%)")

    def centre(results: dict[str, Any]) -> tuple[bool | None, str]:
        r = _value(results, PC_MAIN, "radius_ratio_features")
        c = results["models"][CE_MAIN]["radius_ratio_features"]
        return r < 1.0, f"{PC_MAIN}: median adversarial / clean distance to the centre {r:.2f}" + (
            "" if c is None else f" (CE: {c:.2f})")

    def fewer(results: dict[str, Any]) -> tuple[bool | None, str]:
        a, b = (_value(results, v, "success_rate") for v in (PC_MAIN, CE_MAIN))
        return a < b, f"FGSM 0.3 success rate PC {100 * a:.1f}% vs CE {100 * b:.1f}% (Table 1: accuracy 65.0 vs 31.8)"

    claims = [Claim("CE: adversarial examples mostly land in the most probable false class (more than half predicted "
                    "as the clean point's rank-2 class)", "Fig. 3b, l.268-270", ce_rank2),
              Claim("CE: adversarial examples lie among the clean points of the class they are predicted as (e.g. 5 "
                    "inside 8): more than half inside that class's t-SNE cluster", "Fig. 3b, l.268-270", ce_cluster),
              Claim("PC separates the classes better than CE: higher k-NN purity of the clean points in the t-SNE "
                    "embedding", "Fig. 3a/3c, l.266", purity),
              Claim("PC: the successful adversarial examples lie near the centre of the feature space (median distance "
                    "to the centre below that of the clean points)", "Fig. 3d, l.270", centre),
              Claim("Fewer FGSM eps 0.3 attacks succeed on PC than on CE", "Fig. 3b/3d, Table 1 l.196", fewer)]
    deviations = [("test points / t-SNE settings", "not stated",
                   f"the first {n} test points; perplexity 30, PCA init, seed 0, {max_iter} iterations"),
                  ("measurements", "none (a figure)", f"rank-2 share, k-NN purity and cluster membership (k = {K}), "
                                                      "radius ratio in the feature space")]
    if ctx.scale != "paper":
        deviations.insert(0, ("epochs", "CE 2T = 100; PC: T = 50 CE warm-up + 50 PC (l.177)",
                              f"CE {2 * s.t}; PC: {s.t} + {s.t} (pc-table1's {ctx.scale} models)"))
    if ctx.scale == "smoke":
        deviations.insert(0, ("dataset", "MNIST", f"synthetic 16x16 blobs, {s.train_limit} training images"))
    return Outcome(sections, {"n": n, "eps": FIG3_EPS, "k": K, "models": models}, claims, deviations)


PC_FIG3 = Recipe(
    "pc-fig3", "t-SNE of the feature layer with the successful FGSM eps 0.3 attacks, CE vs PC (PC paper Fig. 3)",
    ("P7",), PC_PAPER,
    plans={"smoke": "synthetic data, pc-table1's smoke CE and PC models, 64 test points, 250 t-SNE iterations",
           "cpu": "MNIST, pc-table1's cpu CE and PC models (T = 8, shared run cache), 2,000 test points, FGSM eps 0.3, "
                  "t-SNE of clean + successful adversarial features",
           "paper": "MNIST, pc-table1's paper-scale CE and PC models (T = 50), 5,000 test points"},
    times={"smoke": "measured ~10 s", "cpu": "measured 27 s (AVX-512 CPU, quiet) and 268 s (loaded AVX2 "
                                             "machine) with pc-table1's CE and PC runs cached (two t-SNEs of "
                                             "~3,000-3,500 points on one thread); training those two runs first: "
                                             "measured 17 min (two processes in parallel, loaded AVX2 machine)",
           "paper": "~10 min after pc-table1 --scale paper (two t-SNEs of ~6,000-8,000 points)"},
    run=_fig3_run)
