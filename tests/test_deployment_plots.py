import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from helper.deployment_plots import (DECISION_STEPS, plot_decision_flow, plot_decode_vs_bound, plot_roofline,  # noqa: E402
                                     predicted_rss_bytes, speed_table_text)


def _result(name, bytes_per_token, decode):
    return {"variant": name, "bytes_per_token": bytes_per_token, "decode_tokens_per_s": decode,
            "prefill_tokens_per_s": 100.0, "baseline_rss": 400e6, "weight_bytes": bytes_per_token,
            "kv_cache_bytes": 1e6, "peak_rss": 420e6 + bytes_per_token}


def test_speed_table_states_each_fraction_of_the_bound():
    results = [_result("fp32", 500e6, 10.0), _result("q4", 100e6, 60.0)]
    table = speed_table_text(results, bandwidth=10e9).splitlines()
    assert table[0].split()[:3] == ["variant", "MB/token", "bound"]
    fp32, q4 = table[2].split(), table[3].split()
    assert fp32[:5] == ["fp32", "500.0", "20.0", "10.0", "50%"]  # 10 GB/s / 500 MB = 20 tokens/s
    assert q4[:5] == ["q4", "100.0", "100.0", "60.0", "60%"]
    assert fp32[-1] == f"{920 / 901:.2f}"  # peak / (baseline + weights + KV)
    assert predicted_rss_bytes(results[0]) == 901e6


def test_figures_draw():
    assert plot_roofline(1e11, 1e10, {"fp32": 4.0, "Q4_0": 0.5625}).axes[0].get_xscale() == "log"
    assert len(plot_decode_vs_bound([_result("a", 1e8, 5.0)], 1e10).axes[0].patches) == 2
    figure = plot_decision_flow()
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert all(question in texts for question, _ in DECISION_STEPS)


@pytest.mark.parametrize("step", DECISION_STEPS, ids=lambda s: s[0])
def test_every_question_leads_somewhere(step):
    _, answers = step
    assert len(answers) == 2 and any(target != "next" for _, target in answers)
