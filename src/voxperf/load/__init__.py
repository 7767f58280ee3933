"""voxperf load: open-model load tests of voice services, on Locust (installed with ``voxperf[load]``).

:mod:`~voxperf.load.arrivals` draws when each request is meant to start; :mod:`~voxperf.load.scenarios`
says what a request does; :mod:`~voxperf.load.locustfile` runs them in Locust's master and workers;
:mod:`~voxperf.load.report` turns the pooled raw samples into the figures (every latency from the
intended start, late and dropped starts counted); :mod:`~voxperf.load.runner` ties them together.
"""
