"""Deployment: an int8 IntModel as a self-contained C99 project for Cortex-M (and the host).

    im = load_int_model("dscnn-kws", data="speech_commands_mini")   # tinykws.recipes: PTQ int8 of a float model
    gen = generate(im, "out/kws", kernels="fast")                   # model.c/.h, kernels, Makefile
    print(gen.plan.table())
    y = run_host("out/kws", x)                                      # == im.run(x), bit for bit

See docs/deploy.md.
"""
from __future__ import annotations


class DeployError(ValueError):
    """A model, option or folder the deployment stage cannot use; the message names it."""


from .plan import MemoryPlan, plan_memory  # noqa: E402
from .codegen import GeneratedModel, generate, prepare_out_dir  # noqa: E402
from .host import build_host, run_host  # noqa: E402


__all__ = ["DeployError", "MemoryPlan", "plan_memory", "GeneratedModel", "generate", "prepare_out_dir",
           "build_host", "run_host"]
