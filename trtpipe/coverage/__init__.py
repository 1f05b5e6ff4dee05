"""Model coverage (issue 6): export, check, parse, build and run the networks users deploy; report the result.

    from trtpipe.coverage.sweep import run_sweep
    rows = run_sweep(["repvgg_a0", "yolov8n"], workdir="engines/coverage")   # one CoverageRow per model
"""
