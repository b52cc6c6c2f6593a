import helper


def test_the_right_answers_pass():
    assert helper.evaluate("07.lora_params", 16_896).correct
    assert helper.evaluate("07.qlora_7b_gb", 6_738_415_616 * 4.127 / 8e9).correct
    assert helper.evaluate("07.lsq_gradient", [0.3, 7.0]).correct


def test_lora_params_names_each_slip():
    cases = {8 * 1536: "A alone", 8 * 576: "B alone", 576 * 1536: "full weight", 12: "not it"}
    for answer, words in cases.items():
        feedback = helper.evaluate("07.lora_params", answer)
        assert not feedback.correct and words in feedback.message, (answer, feedback.message)


def test_qlora_memory_names_each_slip():
    n = 6_738_415_616
    cases = {n * 4.5 / 8e9: "without double", n * 0.5 / 1e9: "codes alone", n * 2 / 1e9: "bf16",
             n * 4.127 / 8 / 2**30: "GiB", 1.0: "not it", "3.6": "as a number"}
    for answer, words in cases.items():
        feedback = helper.evaluate("07.qlora_7b_gb", answer)
        assert not feedback.correct and words in feedback.message, (answer, feedback.message)


def test_lsq_gradient_names_each_slip():
    cases = {(-0.3, 7.0): "sign", (0.0, 7.0): "not 0", (0.3, 0.0): "clamped", (1.0, 1.0): "not yet",
             (0.3,): "two numbers"}
    for answer, words in cases.items():
        feedback = helper.evaluate("07.lsq_gradient", list(answer))
        assert not feedback.correct and words in feedback.message, (answer, feedback.message)
