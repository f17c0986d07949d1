r"""A linear-Gaussian state-space model and its exact log-likelihood (Kalman filter).

The simplest sequential latent variable model (Sec. 2.2, Eq. 3), with linear maps and Gaussian
noise everywhere:

    z_1 ~ N(m_0, P_0)
    z_t = A z_{t-1} + w_t,     w_t ~ N(0, Q)         transition p(z_t | z_{t-1})
    x_t = C z_t + v_t,         v_t ~ N(0, R)         emission p(x_t | z_t)

Its marginal p(x_{1:T}) is Gaussian, and the Kalman filter gives it exactly, one frame at a
time: with the predicted latent N(z_t; m_{t|t-1}, P_{t|t-1}),

    p(x_t | x_{<t}) = N(x_t; C m_{t|t-1}, S_t),      S_t = C P_{t|t-1} C^T + R     (innovation)

so log p(x_{1:T}) = sum_t log p(x_t | x_{<t}). This is a reference for the bounds of a trained
SLVM (:class:`~seqflows.slvm.SLVM`): its ELBO and importance-weighted bounds must stay below the
exact value and approach it.

Example:
    >>> ssm = LinearGaussianSSM.random(latent_dim=2, obs_dim=3, seed=0)
    >>> x = simulate_linear_gaussian(ssm, num_sequences=5, length=10, seed=1)
    >>> x.shape, kalman_log_prob(ssm, x).shape, kalman_log_prob_per_frame(ssm, x).shape
    (torch.Size([5, 10, 3]), torch.Size([5]), torch.Size([5, 10]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "LinearGaussianSSM",
    "kalman_log_prob",
    "kalman_log_prob_per_frame",
    "simulate_linear_gaussian",
]


def _stationary_covariance(transition: Tensor, noise_cov: Tensor) -> Tensor:
    r"""Solves the discrete Lyapunov equation P = A P A^T + Q for a stable A: (Z, Z)."""
    dim = transition.shape[0]
    # vec(A P A^T) = (A kron A) vec(P) for row-major vec as well
    system = torch.eye(dim * dim, dtype=transition.dtype) - torch.kron(transition, transition)
    solution = torch.linalg.solve(system, noise_cov.reshape(-1)).reshape(dim, dim)
    return 0.5 * (solution + solution.T)


@dataclass
class LinearGaussianSSM:
    r"""Parameters of a linear-Gaussian state-space model, in float64.

    Attributes:
        transition: A, with shape (Z, Z).
        transition_cov: Q, the covariance of w_t, with shape (Z, Z).
        emission: C, with shape (D, Z).
        emission_cov: R, the covariance of v_t, with shape (D, D).
        initial_mean: m_0, the mean of z_1, with shape (Z,).
        initial_cov: P_0, the covariance of z_1, with shape (Z, Z).
    """

    transition: Tensor
    transition_cov: Tensor
    emission: Tensor
    emission_cov: Tensor
    initial_mean: Tensor
    initial_cov: Tensor

    def __post_init__(self) -> None:
        for name in (
            "transition",
            "transition_cov",
            "emission",
            "emission_cov",
            "initial_mean",
            "initial_cov",
        ):
            setattr(self, name, torch.as_tensor(getattr(self, name), dtype=torch.float64))
        if self.emission.dim() != 2:
            raise ValueError(f"emission must be (D, Z), got shape {tuple(self.emission.shape)}")
        obs_dim, latent_dim = self.emission.shape
        expected = {
            "transition": (latent_dim, latent_dim),
            "transition_cov": (latent_dim, latent_dim),
            "emission_cov": (obs_dim, obs_dim),
            "initial_mean": (latent_dim,),
            "initial_cov": (latent_dim, latent_dim),
        }
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(
                    f"{name} must have shape {shape} (emission is {obs_dim} x {latent_dim}), "
                    f"got {tuple(getattr(self, name).shape)}"
                )

    @property
    def latent_dim(self) -> int:
        """Z, the size of z_t."""
        return self.emission.shape[1]

    @property
    def obs_dim(self) -> int:
        """D, the size of x_t."""
        return self.emission.shape[0]

    @classmethod
    def random(
        cls,
        latent_dim: int,
        obs_dim: int,
        seed: int,
        spectral_radius: float = 0.9,
        rotation: float = 0.3,
        transition_noise: float = 0.1,
        emission_scale: float = 1.0,
        emission_noise: float = 0.1,
    ) -> LinearGaussianSSM:
        r"""A random stable, stationary and well-conditioned model.

        A = spectral_radius * expm(S) with S skew-symmetric (entries N(0, rotation^2)): every
        eigenvalue of A has modulus ``spectral_radius`` and a small angle, so the latents rotate
        slowly and decay. C = emission_scale * U with U a random matrix of orthonormal columns
        (or rows when D < Z), so every direction of z_t is observed equally well. Q =
        transition_noise * I, R = emission_noise * I, m_0 = 0, and P_0 is the stationary
        covariance (P_0 = A P_0 A^T + Q), so that every frame has the same distribution. With
        the defaults, the frames have variance about 0.6 per dimension and a lag-1
        autocorrelation of about 0.6 - 0.75.

        Arguments:
            latent_dim: Z.
            obs_dim: D.
            seed: Seed of the random matrices.
            spectral_radius: Modulus of the eigenvalues of A, in (0, 1).
            rotation: Standard deviation of the entries of the generator of the rotation.
            transition_noise: Variance of each component of w_t.
            emission_scale: Singular values of C.
            emission_noise: Variance of each component of v_t.
        """
        if latent_dim < 1 or obs_dim < 1:
            raise ValueError(
                f"latent_dim and obs_dim must be positive, got {latent_dim} and {obs_dim}"
            )
        if not 0 < spectral_radius < 1:
            raise ValueError(f"spectral_radius must be in (0, 1), got {spectral_radius}")
        if min(transition_noise, emission_scale, emission_noise) <= 0:
            raise ValueError(
                "transition_noise, emission_scale and emission_noise must be positive, got "
                f"{transition_noise}, {emission_scale} and {emission_noise}"
            )
        generator = torch.Generator().manual_seed(seed)
        options = {"generator": generator, "dtype": torch.float64}
        generator_matrix = rotation * torch.randn(latent_dim, latent_dim, **options)
        skew = (generator_matrix - generator_matrix.T) / math.sqrt(2)
        transition = spectral_radius * torch.linalg.matrix_exp(skew)  # (Z, Z)
        transition_cov = transition_noise * torch.eye(latent_dim, dtype=torch.float64)
        # Orthonormal columns (D >= Z) or rows (D < Z): every singular value is emission_scale
        gaussian = torch.randn(max(obs_dim, latent_dim), min(obs_dim, latent_dim), **options)
        orthonormal = torch.linalg.qr(gaussian).Q  # (max(D, Z), min(D, Z))
        emission = emission_scale * (orthonormal if obs_dim >= latent_dim else orthonormal.T)
        return cls(
            transition=transition,
            transition_cov=transition_cov,
            emission=emission,
            emission_cov=emission_noise * torch.eye(obs_dim, dtype=torch.float64),
            initial_mean=torch.zeros(latent_dim, dtype=torch.float64),
            initial_cov=_stationary_covariance(transition, transition_cov),
        )


def simulate_linear_gaussian(
    ssm: LinearGaussianSSM, num_sequences: int, length: int, seed: int
) -> Tensor:
    r"""Samples x_{1:T} from the model: z_1 ~ N(m_0, P_0), z_t = A z_{t-1} + w, x_t = C z_t + v.

    Arguments:
        ssm: The model.
        num_sequences: Number of sequences N.
        length: Number of time steps T.
        seed: Seed of the noise.

    Returns:
        Observations x in float64, with shape (N, T, D).
    """
    if num_sequences < 1 or length < 1:
        raise ValueError(
            f"num_sequences and length must be positive, got {num_sequences} and {length}"
        )
    generator = torch.Generator().manual_seed(seed)
    options = {"generator": generator, "dtype": torch.float64}
    latent_dim, obs_dim = ssm.latent_dim, ssm.obs_dim
    # Noises as rows: a sample N(0, S) is eps @ chol(S)^T, eps with shape (N, dim)
    initial_factor = torch.linalg.cholesky(ssm.initial_cov)
    transition_factor = torch.linalg.cholesky(ssm.transition_cov)
    emission_factor = torch.linalg.cholesky(ssm.emission_cov)
    z = ssm.initial_mean + torch.randn(num_sequences, latent_dim, **options) @ initial_factor.T
    frames = []
    for t in range(length):
        if t > 0:
            w = torch.randn(num_sequences, latent_dim, **options) @ transition_factor.T
            z = z @ ssm.transition.T + w  # (N, Z)
        v = torch.randn(num_sequences, obs_dim, **options) @ emission_factor.T
        frames.append(z @ ssm.emission.T + v)  # (N, D)
    return torch.stack(frames, dim=1)  # (N, T, D)


def kalman_log_prob_per_frame(ssm: LinearGaussianSSM, x: Tensor) -> Tensor:
    r"""Exact log p(x_t | x_{<t}) of every frame, by the Kalman filter.

    The covariances do not depend on the data, so they are propagated once for all sequences;
    the means are batched. Inverses are Cholesky solves with the innovation covariance S_t, and
    the filtered covariance uses the Joseph form, which stays symmetric positive definite.

    Arguments:
        ssm: The model.
        x: Observations, with shape (N, T, D).

    Returns:
        log N(x_t; C m_{t|t-1}, S_t) in nats, in float64, with shape (N, T); its sum over t is
        log p(x_{1:T}).
    """
    if x.dim() != 3 or x.shape[-1] != ssm.obs_dim:
        raise ValueError(f"x must have shape (N, T, {ssm.obs_dim}), got {tuple(x.shape)}")
    x = x.to(torch.float64)
    num_sequences, length, obs_dim = x.shape
    emission, identity = ssm.emission, torch.eye(ssm.latent_dim, dtype=torch.float64)
    mean = ssm.initial_mean.expand(num_sequences, -1)  # m_{1|0}, (N, Z)
    cov = ssm.initial_cov  # P_{1|0}, (Z, Z)
    log_probs = []
    for t in range(length):
        innovation = x[:, t] - mean @ emission.T  # x_t - C m_{t|t-1}, (N, D)
        innovation_cov = emission @ cov @ emission.T + ssm.emission_cov  # S_t, (D, D)
        factor = torch.linalg.cholesky(innovation_cov)  # S_t = L L^T
        whitened = torch.linalg.solve_triangular(factor, innovation.T, upper=False)  # (D, N)
        log_det = 2 * factor.diagonal().log().sum()
        log_probs.append(
            -0.5 * (whitened.square().sum(0) + log_det + obs_dim * math.log(2 * math.pi))
        )
        # Update: gain K = P C^T S^{-1}, computed as K^T = S^{-1} C P (P and S symmetric)
        gain = torch.cholesky_solve(emission @ cov, factor).T  # (Z, D)
        mean = mean + innovation @ gain.T  # m_{t|t}
        reduction = identity - gain @ emission
        cov = reduction @ cov @ reduction.T + gain @ ssm.emission_cov @ gain.T  # P_{t|t}
        # Prediction
        mean = mean @ ssm.transition.T  # m_{t+1|t}
        cov = ssm.transition @ cov @ ssm.transition.T + ssm.transition_cov  # P_{t+1|t}
        cov = 0.5 * (cov + cov.T)
    return torch.stack(log_probs, dim=1)  # (N, T)


def kalman_log_prob(ssm: LinearGaussianSSM, x: Tensor) -> Tensor:
    r"""Exact log p(x_{1:T}) of each sequence, by the Kalman filter.

    Arguments:
        ssm: The model.
        x: Observations, with shape (N, T, D).

    Returns:
        log p(x_{1:T}) in nats, in float64, with shape (N,).
    """
    return kalman_log_prob_per_frame(ssm, x).sum(dim=1)
