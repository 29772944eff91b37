"""Looking inside trained models: attention locality measures, their report and figures.

locality          the measures (nonlocality, attention distance, GPSA gates/centres/spans)
sources           where weights come from (trainer checkpoints, converted weights, fresh init)
images            the images analysed (eval split, image file, array)
plots             matplotlib figures of the measures
locality_report   the command / `run_locality(config, workdir, ...)` for main.py --mode locality
"""
