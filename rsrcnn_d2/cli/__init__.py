"""The programs: one module per command, each a thin ``main(argv=None) -> int`` over library
calls, installed as a console script and runnable as ``python -m rsrcnn_d2.cli.<name>``;
``tools/<name>.py`` only calls them.

    prepare              rsrcnn-prepare          tools/prepare_pwml.py
    make_cohort          rsrcnn-make-cohort      tools/make_synthetic_cohort.py
    train_net            rsrcnn-train            tools/train_net.py (its ``cli``)
    evaluate             rsrcnn-evaluate         tools/evaluate.py
    predict              rsrcnn-predict          tools/predict.py
    ensemble             rsrcnn-ensemble         tools/ensemble.py
    tune_operating_point rsrcnn-tune             tools/tune_operating_point.py, tune_dcrf.py
    tune_classical       rsrcnn-tune-classical   tools/tune_classical.py
    eval_classical       rsrcnn-eval-classical   tools/eval_classical.py
    plot_results         rsrcnn-plot             tools/plot_results.py
    run_cv               rsrcnn-cv               tools/run_cv.py
    find_best            rsrcnn-find-best        tools/find_best.py
    run_ablation         rsrcnn-ablation         tools/run_ablation.py
    run_loso             rsrcnn-loso             tools/run_loso.py
    demo                 rsrcnn-demo             tools/demo.py

The top layer: a program may import any unit of the library, no library unit imports a
program. At module level a program imports only the standard library's argparse-level
modules and light project modules (`common`, `rsrcnn_d2.errors`, `rsrcnn_d2.tool_setup`,
`rsrcnn_d2.model_zoo`); torch, detectron2 and the library proper load inside ``main`` after
the arguments are parsed, so that ``--help`` and argument errors answer at once.
"""
