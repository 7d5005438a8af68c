"""What trains several runs and compares them: the reproduction of Tables 1-5 and its
report, the learning-rate sweep. The one package that imports training, eval and analysis
together; each run is trained by the `cmp_tf.train` command in its own process."""
