"""Applications beside the commands: what ``pti demo`` and ``pti report`` run, and the notebooks' set-up.

- :mod:`pti.apps.demo`: the bundled demo (the distilled generator, its photos, W vs PTI edits);
- :mod:`pti.apps.report`: ``pti report``, the numbered notebooks run through papermill;
- :mod:`pti.apps.notebook_support`: what each notebook's first cell imports (device, paths, helpers).

They use the jobs layer and everything beneath it; nothing beneath imports them.
"""
