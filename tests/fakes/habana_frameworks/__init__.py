"""A fake of Intel Gaudi's habana_frameworks, for tests on machines without a Gaudi.

Only what gaudi-aot calls exists, with the real call signatures; "hpu" work runs on the CPU with
plain torch, and every call is recorded in habana_frameworks.fake_log. Tests put tests/fakes on
sys.path (and PYTHONPATH, for the build's warm-up process) through a fixture. Environment knobs:
FAKE_GAUDI_GENERATION (default GAUDI2), FAKE_HABANA_VERSION, FAKE_HPU_AVAILABLE (default 1).
"""
