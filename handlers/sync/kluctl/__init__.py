"""kluctl projects as Shipline's ``kluctl`` render mode: ``.kluctl.yaml`` targets, the
``deployment.yaml`` tree, vars, Jinja2 templates, kustomize, pre-pulled Helm charts and barriers,
rendered as kluctl renders them (its docs and ``pkg/deployment``), with no network and no cluster.
``render.render_project`` is the entry point; ``prune`` holds the discriminator-based prune rules."""
