"""``trueno serve``: an OpenAI-compatible HTTP server over the continuous-batching engine.

Modules, one concept each: ``schema`` (request validation and OpenAI error bodies, no web
imports), ``metrics`` (Prometheus), ``engine`` (the engine thread that owns the model),
``app`` (the Starlette routes and the SSE writer). Needs the ``server`` extra
(``pip install 'trueno[server]'``); ``import trueno`` never imports this package.
"""
