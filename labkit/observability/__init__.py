"""Reading what the lab observes: PromQL against the lab's Prometheus (``promql``) and a process's own cgroup
(``cgroups``), the two sources the observability lessons (06, 07, 12) and the insight engine read."""
