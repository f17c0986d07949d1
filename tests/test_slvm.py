"""Sequential latent variable models: bounds, KL, flow objective, causality, sizes, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from seqflows.app.figures import figure_rows
from seqflows.distributions import normal_kl, normal_log_prob
from seqflows.latent import MAX_LOG_SCALE, MIN_LOG_SCALE
from seqflows.networks import ConvDecoder, ConvEncoder
from seqflows.slvm import SLVM


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def small_vector_model(num_transforms: int = 0, **kwargs) -> SLVM:
    torch.manual_seed(0)
    model = SLVM(
        (3,),
        latent_dim=4,
        num_transforms=num_transforms,
        window=2,
        lstm_hidden=16,
        mlp_hidden=16,
        conditioner="mlp",
        identity_init=False,
        init=kwargs.pop("init", "default"),  # PyTorch's: the tolerances below were set with it
        **kwargs,
    )
    return model.eval()


def small_image_model(num_transforms: int = 0) -> SLVM:
    torch.manual_seed(0)
    model = SLVM(
        (1, 8, 8),
        latent_dim=4,
        num_transforms=num_transforms,
        window=1,
        lstm_hidden=8,
        encoder_features=8,
        conv_width=4,
        hidden=4,
        identity_init=False,
    )
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        model.train()(torch.rand(4, 5, 1, 8, 8))
    return model.eval()


def test_parameter_counts_are_near_table_2():
    # Paper, Table 2 (Moving MNIST): SLVM 11,302k, SLVM w/ 1-AF 10,592k.
    baseline = sum(p.numel() for p in SLVM((1, 64, 64)).parameters())
    with_flow = sum(p.numel() for p in SLVM((1, 64, 64), num_transforms=1).parameters())
    assert baseline == pytest.approx(11_302_000, rel=0.005)
    assert with_flow == pytest.approx(10_592_000, rel=0.005)
    assert SLVM((1, 64, 64)).latent.posterior_lstm.num_layers == 2
    assert SLVM((1, 64, 64), num_transforms=1).latent.posterior_lstm.num_layers == 1


@pytest.mark.parametrize("size", [8, 32, 64])
def test_conv_encoder_and_decoder_shapes(size):
    encoder, decoder = (
        ConvEncoder((3, size, size), features=16, width=4),
        ConvDecoder((3, size, size), latent_dim=5, width=4),
    )
    assert encoder(torch.rand(2, 3, size, size)).shape == (2, 16)
    loc, log_scale = decoder(torch.randn(2, 5))
    assert loc.shape == log_scale.shape == (2, 3, size, size)
    with pytest.raises(ValueError, match="side 4 \\* 2\\^n"):
        ConvEncoder((1, 48, 48), features=16, width=4)


def test_analytic_kl_equals_a_monte_carlo_estimate():
    torch.manual_seed(0)
    loc_q, log_scale_q = torch.randn(5), 0.3 * torch.randn(5)
    loc_p, log_scale_p = torch.randn(5), 0.3 * torch.randn(5)
    z = loc_q + torch.exp(log_scale_q) * torch.randn(400_000, 5, dtype=torch.float64)
    samples = normal_log_prob(z, loc_q, log_scale_q, 1) - normal_log_prob(z, loc_p, log_scale_p, 1)
    analytic = normal_kl(loc_q, log_scale_q, loc_p, log_scale_p)
    error = samples.std() / math.sqrt(len(samples))
    assert abs(float(samples.mean() - analytic)) < 4 * float(error)
    q = torch.distributions.Normal(loc_q, torch.exp(log_scale_q))
    p = torch.distributions.Normal(loc_p, torch.exp(log_scale_p))
    torch.testing.assert_close(analytic, torch.distributions.kl_divergence(q, p).sum())


def test_elbo_terms_recombine_and_match_a_sampled_kl():
    model = small_vector_model()
    x = torch.randn(2, 6, 3)
    terms = model.elbo_terms(x, generator(1))
    torch.testing.assert_close(model.elbo(x, generator(1)), terms.log_likelihood - terms.kl)
    assert terms.elbo.shape == (2, 6 - model.burn_in)
    # The per-frame importance weights at K samples average to the ELBO: log q - log p of the
    # sampled z estimates the analytic KL.
    weights = model.latent.log_weights(x, 4000, generator(2)).mean(1)[:, model.burn_in :]
    full = torch.stack([model.elbo(x, generator(seed)) for seed in range(200)]).mean(0)
    torch.testing.assert_close(weights, full, atol=0.15, rtol=0)


def test_iwae_with_one_sample_is_the_summed_elbo_in_expectation():
    model = small_vector_model()
    x = torch.randn(3, 6, 3)
    copies = x.repeat(2000, 1, 1)  # 2000 independent samples of each sequence in one batch
    iwae = model.bound(copies, 1, generator(0)).view(2000, 3)
    elbo = model.elbo(copies, generator(1)).sum(1).view(2000, 3)
    error = torch.sqrt(iwae.var(0) / 2000 + elbo.var(0) / 2000)
    assert torch.all((iwae.mean(0) - elbo.mean(0)).abs() < 4 * error)
    # The two estimates differ sample by sample (sampled vs analytic KL): not a tautology.
    assert float((iwae - elbo).abs().mean()) > 0.01


def test_iwae_bound_grows_with_the_number_of_samples():
    model = small_vector_model()
    x = torch.randn(4, 6, 3)
    means = {
        k: torch.stack([model.bound(x, k, generator(seed)) for seed in range(40)]).mean()
        for k in (1, 4, 32)
    }
    assert means[1] < means[4] < means[32]
    chunked = model.bound(x, 32, generator(7), chunk=5)
    assert torch.isfinite(chunked).all() and chunked.shape == (4,)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_iwae_of_the_last_frames_only(num_transforms):
    """scored=N sums the log-weights and log-determinants of the last N frames only."""
    model = small_vector_model(num_transforms)
    x = torch.randn(2, 8, 3)
    v = x if model.flow is None else model.flow.normalize(x).noise
    weights = model.latent.log_weights(v, 5, generator(4))[:, :, -3:].sum(2)
    expected = torch.logsumexp(weights, 1) - math.log(5)
    if model.flow is not None:
        expected = expected + model.flow.normalize(x).log_abs_det[:, -3:].sum(1)
    torch.testing.assert_close(model.bound(x, 5, generator(4), scored=3), expected)
    with pytest.raises(ValueError, match="scored must be between 1 and 6"):
        model.bound(x, 5, scored=7)


@pytest.mark.parametrize("num_transforms", [1, 2])
def test_flow_objective_is_the_latent_objective_on_y_plus_the_log_determinant(num_transforms):
    model = small_vector_model(num_transforms)
    x = torch.randn(2, 8, 3)
    out = model.flow.normalize(x)
    expected = model.latent.elbo(out.noise, generator(3)) + out.log_abs_det
    torch.testing.assert_close(model.elbo(x, generator(3)), expected, rtol=0, atol=0)
    latent_bound = torch.logsumexp(model.latent.log_weights(out.noise, 5, generator(4)).sum(2), 1)
    expected_bound = latent_bound - math.log(5) + out.log_abs_det.sum(1)
    torch.testing.assert_close(model.bound(x, 5, generator(4)), expected_bound)
    assert model.elbo(x).shape == (2, 8 - num_transforms * 2)


def test_image_model_with_flow_objective_and_shapes():
    model = small_image_model(num_transforms=1)
    x = torch.rand(2, 5, 1, 8, 8)
    terms = model.elbo_terms(x, generator(0))
    torch.testing.assert_close(
        terms.elbo,
        model.latent.elbo(terms.flow.noise, generator(0)) + terms.flow.log_abs_det,
        rtol=0,
        atol=0,
    )
    assert terms.likelihood_loc.shape == (2, 4, 1, 8, 8)
    assert model.latent.loc_map == "linear"
    assert small_image_model(0).latent.loc_map == "sigmoid"


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_filtering_posterior_is_causal(num_transforms):
    model = small_image_model(num_transforms)
    x = torch.rand(1, 6, 1, 8, 8)
    v = x if model.flow is None else model.flow.normalize(x).noise
    before = model.latent.infer(model.latent.encode(v), generator(5))
    changed = x.clone()
    changed[:, 4:] = torch.rand(1, 2, 1, 8, 8)
    w = changed if model.flow is None else model.flow.normalize(changed).noise
    after = model.latent.infer(model.latent.encode(w), generator(5))
    last = v.shape[1] - 2  # frames of v that come before the change
    torch.testing.assert_close(before.z[:, :last], after.z[:, :last], rtol=0, atol=0)
    torch.testing.assert_close(before.loc[:, :last], after.loc[:, :last], rtol=0, atol=0)
    assert not torch.allclose(before.loc[:, last:], after.loc[:, last:])


def test_baseline_scores_the_frames_after_its_context():
    model = small_vector_model(burn_in=2)
    x = torch.randn(2, 7, 3)
    full = model.latent.elbo(x, generator(0))
    torch.testing.assert_close(model.elbo(x, generator(0)), full[:, 2:], rtol=0, atol=0)
    assert small_vector_model().burn_in == 2  # default: the window
    assert small_vector_model(burn_in=0).elbo(x).shape == (2, 7)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_training_objective_covers_every_frame_of_the_crop_for_the_baseline(num_transforms):
    """The authors train the baseline on the ELBO of all crop frames and report the last ones."""
    x = torch.randn(2, 7, 3)
    model = small_vector_model(num_transforms)  # window 2: burn_in 2 (flow: M * k = 2)
    trained = model.elbo_terms(x, generator(0), model.train_frames).elbo
    scored = model.elbo(x, generator(0))
    assert scored.shape == (2, 5)
    assert trained.shape == ((2, 7) if num_transforms == 0 else (2, 5))
    torch.testing.assert_close(trained[:, trained.shape[1] - 5 :], scored, rtol=0, atol=0)
    only_scored = small_vector_model(num_transforms, train_frames="scored")
    assert only_scored.elbo_terms(x, generator(0), only_scored.train_frames).elbo.shape == (2, 5)
    with pytest.raises(ValueError, match="train_frames must be one of"):
        small_vector_model(train_frames="context")


def test_the_latent_model_moved_to_its_module_and_its_old_names_still_work():
    """The latent sequence model lives in seqflows.latent; seqflows.slvm still gives its names,
    those it does not use itself with a DeprecationWarning that says where they are."""
    import seqflows.latent as latent
    import seqflows.slvm as slvm

    assert slvm.LatentSequenceModel is latent.LatentSequenceModel
    assert slvm.LatentConfig is latent.LatentConfig
    assert isinstance(
        SLVM((3,), latent_dim=2, lstm_hidden=4, mlp_hidden=4).latent, latent.LatentSequenceModel
    )
    for name in ("Posterior", "StackedLSTM", "reference_initialization", "MIN_LOG_SCALE"):
        with pytest.deprecated_call(
            match=f"^seqflows.slvm.{name} moved to seqflows.latent.{name}$"
        ):
            assert getattr(slvm, name) is getattr(latent, name)
    with pytest.raises(AttributeError, match="has no attribute 'Latent'"):
        slvm.Latent  # noqa: B018


def test_reference_initialization_follows_the_authors():
    torch.manual_seed(0)
    sizes = {"latent_dim": 64, "lstm_hidden": 128, "encoder_features": 32, "conv_width": 32}
    default = SLVM((1, 16, 16), init="default", **sizes)
    torch.manual_seed(0)
    model = SLVM(
        (1, 16, 16),
        latent_dim=64,
        lstm_hidden=128,
        encoder_features=32,
        conv_width=32,
        init="reference",
    )
    latent = model.latent
    weight = latent.posterior_loc.weight  # 128 -> 64: xavier-normal std sqrt(2 / (128 + 64))
    assert weight.std().item() == pytest.approx(math.sqrt(2 / 192), rel=0.05)
    assert abs(weight.mean().item()) < 0.01
    assert torch.all(latent.posterior_loc.bias == 0)
    for layer in (latent.prior_input[0], latent.prior_input[2]):  # linear layers before ReLU
        assert torch.all(layer.bias == 0.1)
    cell = latent.prior_lstm.cells[0]
    assert torch.all(cell.bias_ih == 0) and torch.all(cell.bias_hh == 0)
    assert cell.weight_hh.std().item() == pytest.approx(math.sqrt(2 / (128 + 512)), rel=0.05)
    gammas = torch.cat([m.weight for m in latent.modules() if isinstance(m, torch.nn.BatchNorm2d)])
    assert gammas.mean().item() == pytest.approx(1.0, abs=0.005)
    assert gammas.std().item() == pytest.approx(0.02, rel=0.2)
    # PyTorch's default: uniform weights of bound 1/sqrt(fan_in), BatchNorm scales exactly 1.
    assert default.latent.posterior_loc.weight.abs().max() <= 1 / math.sqrt(128)
    assert all(
        torch.all(m.weight == 1)
        for m in default.latent.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )
    with pytest.raises(ValueError, match="init must be one of"):
        SLVM((3,), init="glorot")


def test_encoder_and_decoder_see_all_frames_in_one_call():
    model = small_image_model(0)
    calls = []
    model.latent.encoder.register_forward_hook(lambda m, i, o: calls.append(("enc", i[0].shape)))
    model.latent.decoder.register_forward_hook(lambda m, i, o: calls.append(("dec", i[0].shape)))
    model.elbo(torch.rand(3, 5, 1, 8, 8))
    assert calls == [("enc", (15, 1, 8, 8)), ("dec", (15, 4))]


def test_every_parameter_gets_a_gradient():
    model = small_image_model(1).train()
    (-model.elbo(torch.rand(2, 5, 1, 8, 8)).mean()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, missing


def test_sampling_shapes_context_and_errors():
    baseline = small_image_model(0)
    context = torch.rand(2, 3, 1, 8, 8)
    assert baseline.sample(2, 4, generator=generator(0)).shape == (2, 4, 1, 8, 8)
    predicted = baseline.sample(2, 4, context=context, generator=generator(0))
    assert predicted.shape == (2, 4, 1, 8, 8) and torch.isfinite(predicted).all()
    again = baseline.sample(2, 4, context=context, generator=generator(0))
    torch.testing.assert_close(predicted, again)
    flow = small_image_model(1)
    assert flow.sample(2, 3, context=context[:, :1]).shape == (2, 3, 1, 8, 8)
    mean = flow.sample(2, 3, context=context[:, :1], generator=generator(1), temperature=0.0)
    mean_again = flow.sample(2, 3, context=context[:, :1], generator=generator(2), temperature=0)
    assert not torch.allclose(mean, mean_again)  # the latents are still sampled
    with pytest.raises(ValueError, match="needs 1 context frames"):
        flow.sample(2, 3)
    # Context beyond the flow's burn-in: the latent model filters its noise y.
    history = flow.flow.normalize(context).noise  # (2, 2, 1, 8, 8): frames 1 and 2
    latent = flow.latent.sample(2, 3, history, generator(3))
    expected = flow.flow.generate(latent, context)[:, 3:]
    torch.testing.assert_close(
        flow.sample(2, 3, context=context, generator=generator(3)), expected
    )
    fresh = flow.flow.generate(flow.latent.sample(2, 3, None, generator(3)), context)[:, 3:]
    assert not torch.allclose(expected, fresh)
    with pytest.raises(ValueError, match="leave nothing to score"):
        flow.elbo(context[:, :1])


def test_sizes_below_one_are_refused_naming_the_argument():
    names = ("latent_dim", "lstm_hidden", "encoder_features", "mlp_hidden")
    for name in (*names, "lstm_layers", "conv_width"):
        with pytest.raises(ValueError, match=f"^latent.{name} must be at least 1, got 0"):
            SLVM((3,), **{name: 0})
    for name in ("window", "hidden"):  # the flow's: with a flow
        with pytest.raises(ValueError, match=f"^likelihood.conditioner.{name} must be at least 1"):
            SLVM((3,), num_transforms=1, **{name: 0})
    with pytest.raises(ValueError, match="^burn_in must be at least 0, got -1"):
        SLVM((3,), burn_in=-1)
    with pytest.raises(ValueError, match="^burn_in=2: with a flow the context is the flow's"):
        SLVM((3,), num_transforms=1, window=3, burn_in=2)
    for num_transforms in (0, 1):
        model = small_vector_model(num_transforms)
        context = torch.randn(2, 2, 3)
        for length in (0, -1):
            with pytest.raises(ValueError, match=f"^length must be at least 1, got {length}"):
                model.sample(2, length, context=context)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_non_finite_input_is_refused_before_it_reaches_batchnorm(num_transforms):
    model = small_image_model(num_transforms).train()
    statistics = {name: buffer.clone() for name, buffer in model.named_buffers()}
    x = torch.rand(2, 5, 1, 8, 8)
    x[0, 4, 0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match=r"x holds NaN or infinite values .*sequence 0, frame 4"):
        model.elbo(x, generator(0))
    with pytest.raises(ValueError, match="x holds NaN or infinite values"):
        model.bound(x, 2, generator(0))
    for name, buffer in model.named_buffers():
        torch.testing.assert_close(buffer, statistics[name], rtol=0, atol=0)
    x[0, 4, 0, 3, 3] = float("nan")  # a missing value (seqflows.missing): filled, not refused
    model.elbo(x, generator(0))
    assert all(bool(torch.isfinite(buffer).all()) for buffer in model.buffers())
    with pytest.raises(TypeError, match="x is torch.float64 but the model's parameters are"):
        model.elbo(torch.rand(2, 5, 1, 8, 8, dtype=torch.float64), generator(0))


def test_mixed_precision_keeps_the_bound_in_float32():
    model = small_image_model(1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        elbo = model.elbo(torch.rand(2, 5, 1, 8, 8), generator(0))
        bound = model.bound(torch.rand(2, 5, 1, 8, 8), 3, generator(0))
    assert elbo.dtype == bound.dtype == torch.float32
    assert torch.isfinite(elbo).all() and torch.isfinite(bound).all()


def test_mixed_precision_computes_likelihood_and_kl_in_float32(monkeypatch):
    """Under autocast the encoder and decoder run in bf16, but the KL and log p(v_t | z_t) are
    float32 maths: given the networks' outputs they match float64 to float32 precision."""
    latent = small_image_model(0).latent
    recorded = {}
    decoder_outputs = []
    latent.decoder.register_forward_hook(lambda module, args, out: decoder_outputs.append(out))
    for name in ("infer", "prior"):
        method = getattr(latent, name)

        def recording(*args, method=method, name=name, **kwargs):
            recorded[name] = method(*args, **kwargs)
            return recorded[name]

        monkeypatch.setattr(latent, name, recording)
    v = torch.rand(2, 5, 1, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        log_likelihood, kl, _, _ = latent.terms(v, generator(0))
    ((raw_loc, raw_log_scale),) = decoder_outputs
    assert raw_loc.dtype == torch.bfloat16  # the decoder ran in bf16
    assert log_likelihood.dtype == kl.dtype == torch.float32
    posterior, (prior_loc, prior_log_scale) = recorded["infer"], recorded["prior"]
    expected_kl = normal_kl(
        posterior.loc.double(),
        posterior.log_scale.double(),
        prior_loc.double(),
        prior_log_scale.double(),
    )
    loc = torch.sigmoid(raw_loc.double()).unflatten(0, (2, 5))  # the baseline's loc map
    log_scale = raw_log_scale.double().clamp(MIN_LOG_SCALE, MAX_LOG_SCALE).unflatten(0, (2, 5))
    expected_likelihood = normal_log_prob(v.double(), loc, log_scale, 3)
    torch.testing.assert_close(kl.double(), expected_kl, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(log_likelihood.double(), expected_likelihood, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_second_names_are_deprecated_aliases_of_the_one_name(num_transforms):
    """``iwae`` is ``bound`` and ``training_terms`` is ``elbo_terms`` of the training frames:
    each warns, naming its replacement, and gives the same numbers."""
    model = small_vector_model(num_transforms)
    x = torch.randn(2, 7, 3)
    with pytest.warns(DeprecationWarning, match=r"SLVM.iwae is deprecated: use SLVM.bound"):
        old = model.iwae(x, 3, generator(2), None, 4)
    torch.testing.assert_close(old, model.bound(x, 3, generator(2), scored=4), rtol=0, atol=0)
    with pytest.warns(DeprecationWarning, match=r"training_terms is deprecated: use SLVM.elbo_t"):
        old = model.training_terms(x, generator(0)).elbo
    new = model.elbo_terms(x, generator(0), model.train_frames).elbo
    torch.testing.assert_close(old, new, rtol=0, atol=0)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_rows_are_named_for_what_they_are(num_transforms):
    """The baseline's rows are its likelihood's loc, scale and residual; with a flow, the
    flow's shift, scale and noise."""
    model = small_image_model(num_transforms)
    x = torch.rand(2, 4, 1, 8, 8)
    data, layers = figure_rows(model, x, generator(0))
    torch.testing.assert_close(data, x[:, model.burn_in :])
    if num_transforms == 0:
        (layer,) = layers
        assert list(layer) == ["loc", "scale", "residual"]
        torch.testing.assert_close(layer["residual"], (data - layer["loc"]) / layer["scale"])
    else:
        assert [list(layer) for layer in layers] == [["shift", "scale", "noise"]]


def reference_log_weights(model: SLVM, v: torch.Tensor, num_samples: int, seed: int):
    """The log-weights as first written: features and data copied K times, no broadcasting."""
    latent = model.latent
    batch, length = v.shape[:2]
    features = latent.encode(v).repeat_interleave(num_samples, dim=0)
    repeated = v.repeat_interleave(num_samples, dim=0)
    posterior = latent.infer(features, generator(seed))
    prior_loc, prior_log_scale = latent.prior(posterior.z)
    log_prior = normal_log_prob(posterior.z, prior_loc, prior_log_scale, 1)
    log_posterior = normal_log_prob(posterior.z, posterior.loc, posterior.log_scale, 1)
    loc, log_scale = latent.likelihood(posterior.z)
    log_likelihood = normal_log_prob(repeated, loc, log_scale, len(latent.event_shape))
    return (log_likelihood + log_prior - log_posterior).view(batch, num_samples, length)


@pytest.mark.parametrize("image", [False, True])
def test_log_weights_equal_the_reference_computation(image):
    model = small_image_model() if image else small_vector_model()
    v = torch.rand(3, 5, 1, 8, 8) if image else torch.randn(3, 5, 3)
    expected = reference_log_weights(model, v, 4, seed=6)
    torch.testing.assert_close(model.latent.log_weights(v, 4, generator(6)), expected)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_k_samples_in_one_batch_equal_k_separate_calls(num_transforms):
    """For one sequence the generator's stream gives sample k the same noise whether the K
    samples are drawn in one batch, in chunks or one call at a time (torch fills normal noise
    in blocks of 16 numbers: each sample draws T * latent_dim = 32 here, so the blocks align)."""
    model = small_vector_model(num_transforms)
    x = torch.randn(1, 8 if model.flow is None else 8 + model.burn_in, 3)  # v: 8 frames
    v = x if model.flow is None else model.flow.normalize(x).noise
    stream = generator(8)
    separate = torch.cat([model.latent.log_weights(v, 1, stream) for _ in range(6)], dim=1)
    torch.testing.assert_close(model.latent.log_weights(v, 6, generator(8)), separate)
    whole = model.bound(x, 6, generator(8))
    for chunk in (1, 4, 6):
        torch.testing.assert_close(model.bound(x, 6, generator(8), chunk=chunk), whole)


class Calls:
    """Counts the calls of a function (and whether they ran under inference mode)."""

    def __init__(self, function):
        self.function, self.count, self.inference = function, 0, []

    def __call__(self, *args, **kwargs):
        self.count += 1
        self.inference.append(torch.is_inference_mode_enabled())
        return self.function(*args, **kwargs)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_evaluation_normalizes_and_encodes_the_data_once(num_transforms):
    """The ELBO and the bound of an evaluation share the flow's normalize and the encoder's
    features (they do not depend on the samples): the same numbers as scores() then bound()
    with one generator, with x normalized once and encoded once, under inference mode."""
    from seqflows.app.evaluation import SequenceScores

    model = small_image_model(num_transforms)
    x = torch.rand(3, 6, 1, 8, 8)
    stream = generator(9)
    scores = model.scores(x, stream)
    bound = model.bound(x, 5, stream, chunk=2, scored=4)
    frame_scores, both_bound = model.scores_and_bound(x, 5, generator(9), chunk=2, scored=4)
    torch.testing.assert_close(frame_scores.log_prob, scores.log_prob)
    torch.testing.assert_close(both_bound, bound)

    encoder = Calls(model.latent.encoder.forward)
    model.latent.encoder.forward = encoder
    if model.flow is not None:
        normalize = model.flow.normalize = Calls(model.flow.normalize)
    accumulator = SequenceScores(model.event_shape, iwae_samples=5, iwae_chunk=2, scored_frames=4)
    accumulator.update(model, x, generator(9))
    assert encoder.count == 1 and encoder.inference == [True]
    if model.flow is not None:
        assert normalize.count == 1
    assert accumulator.iwae_total == pytest.approx(float(bound.double().sum()), rel=1e-6)
    expected = scores.log_prob[:, -4:].double().sum()
    assert accumulator.likelihood.total == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("num_transforms", [0, 1])
def test_sampling_costs_the_same_per_step_whatever_the_length(num_transforms):
    """Without timing: each new step runs the prior's LSTM once on B latents, the decoder
    sees the B * T new latents in one call, the flow decodes one window of B per step, and
    the context is filtered once: nothing per step grows with T (the encoder never re-runs)."""
    model = small_image_model(num_transforms)
    batch, context = 2, torch.rand(2, 3, 1, 8, 8)
    found = {}
    for length in (3, 9):
        calls = {"prior": [], "decoder": [], "encoder": [], "flow": []}
        networks = {
            "prior": model.latent.prior_lstm,
            "decoder": model.latent.decoder,
            "encoder": model.latent.encoder,
        }
        if model.flow is not None:
            networks["flow"] = model.flow.transforms[0].conditioner
        for name, network in networks.items():
            method = "decode" if name == "flow" else "forward"
            original = getattr(network, method)

            def wrapper(tensor, *args, _original=original, _calls=calls[name], **kwargs):
                _calls.append(tensor.shape[0])
                return _original(tensor, *args, **kwargs)

            setattr(network, method, wrapper)
        model.sample(batch, length, context, generator(0))
        for name, network in networks.items():
            delattr(network, "decode" if name == "flow" else "forward")
        found[length] = calls
    for length, calls in found.items():
        # the context frames the latent model filters: all of them, or those after the flow's
        filtered = context.shape[1] - (0 if model.flow is None else model.burn_in)
        assert calls["prior"] == [batch] * (filtered + length)
        assert calls["decoder"] == [batch * length]
        assert calls["encoder"] == ([batch * filtered] if filtered else [])
        if model.flow is not None:  # the context's noise once, then one window per step
            assert calls["flow"] == [batch * filtered] + [batch] * length
