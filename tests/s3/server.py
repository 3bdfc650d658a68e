"""A loopback S3 server for the end-to-end tests: moto, with every request
SigV4-checked after the set-up below.

moto lets the first INITIAL_NO_AUTH_ACTION_COUNT requests through unsigned:
they make an IAM user, its access key and a policy allowing s3:*. Every later
request, bucket creation included, must be signed with that key (a wrong
secret gets SignatureDoesNotMatch).

Prints one JSON line: {"url", "access_key_id", "secret_access_key"}. Then
each line read on stdin names a bucket to create, answered "ok". The server
stops when stdin closes (the test process is gone).
"""

import json
import logging
import os
import sys

os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "3"

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
}


def main():
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"

    def client(service, key_id="setup", secret="setup"):
        return boto3.client(
            service,
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )

    iam = client("iam")
    iam.create_user(UserName="mkondo")
    key = iam.create_access_key(UserName="mkondo")["AccessKey"]
    iam.put_user_policy(
        UserName="mkondo", PolicyName="s3", PolicyDocument=json.dumps(POLICY)
    )
    s3 = client("s3", key["AccessKeyId"], key["SecretAccessKey"])
    print(
        json.dumps(
            {
                "url": url,
                "access_key_id": key["AccessKeyId"],
                "secret_access_key": key["SecretAccessKey"],
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        s3.create_bucket(Bucket=line.strip())
        print("ok", flush=True)
    server.stop()


if __name__ == "__main__":
    main()
