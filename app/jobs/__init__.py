"""Jobs and the datasets they wait on: the state tables (`states`) and the lifecycle (`lifecycle`),
the only code that writes a job's or a dataset's status."""
