"""Where a notebook runs: a Dask engine of workers, each forking jailed kernels from a kernel template.

| module | job |
| --- | --- |
| ``sandbox`` | the jail's outer wall (bubblewrap around the template), its layout and limits, the probe |
| ``uids`` | throw-away uids leased machine-wide (no two live kernels share one) |
| ``template`` | the kernel template (runs in the jail): per job, namespaces, tmpfs quotas, a supervisor, the kernel |
| ``provisioner`` | jupyter_client's side: the template, and a kernel provisioner whose kernel is a template job |
| ``execute`` | run one notebook as far as it gets (every message counted) and name the limit that stopped it |
| ``jobs`` | one job as plain data: check, sanitize, execute, hand back the records as bytes |
| ``engine`` | Dask: where jobs run, results streamed back, a dead worker's job run again elsewhere |
"""
