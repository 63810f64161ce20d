// One VM at a time: the machines have 2 cores and TCG uses them all.
[assembly: Xunit.CollectionBehavior(DisableTestParallelization = true)]
