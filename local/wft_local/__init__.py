"""Everything that stands in for a cluster when there is none (`wft up`, `wft demo`, tests).

- `kube_api.EmbeddedKubernetes`: a Kubernetes API server on loopback, in a thread
  (`kube_store` holds the objects and the API-server semantics; `kube_table` prints for
  kubectl; `kube_patch`, `kube_select`, `kube_schema`, `kube_resources` are its parts).
- `job_runner.JobRunner`: the kubelet and Job controller: Jobs become local processes
  (`pod_process` builds their argv, environment and volumes).
- `stack.LocalStack`: the API, an S3 server (moto), the operator and the Job runner together.
- `demo_data`, `speech`: the demo's synthetic speech dataset and tiny base model.

What is real around them: the operator, the trainer, the S3 protocol (boto3 against moto over
HTTP), the Kubernetes clients (kubectl, Kopf, the Python client). What is not: scheduling,
images, containers, resource limits, RBAC enforcement.
"""
