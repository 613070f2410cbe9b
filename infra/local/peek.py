#!/usr/bin/env python3
"""Reads the local AWS endpoint for the demo and the end-to-end check, by the template's logical
names (from .stack/resources.json, written by provision.py).

  peek.py drain QUEUE        print each message body on the queue (one JSON per line), deleting it
  peek.py objects BUCKET     print the bucket's keys with their sizes
  peek.py send QUEUE FILE    send the bodies of an SQS event file's records to the queue, as a
                             producer would
  peek.py push-endpoint TOKEN  print the ARN of an FCM platform endpoint for the device TOKEN
                             (the application 'adworkers-local-fcm' is created once)
  peek.py push-messages ARN  print what the local SNS delivered to a platform endpoint
"""
import json
import os
import pathlib
import sys

import boto3

ROOT = pathlib.Path(__file__).resolve().parents[2]
RESOURCES = json.loads((ROOT / ".stack" / "resources.json").read_text())


def client(name):
    return boto3.client(name, endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                        region_name=os.environ.get("AWS_REGION", "ap-northeast-2"))


def main(command, *names):
    if command == "drain":
        sqs, url = client("sqs"), RESOURCES[names[0]]
        while True:
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                           WaitTimeSeconds=0).get("Messages", [])
            if not messages:
                break
            for message in messages:
                print(message["Body"])
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    elif command == "objects":
        listed = client("s3").list_objects_v2(Bucket=RESOURCES[names[0]])
        for item in listed.get("Contents", []):
            print(f"{item['Key']}  {item['Size']} bytes")
    elif command == "send":
        sqs, url = client("sqs"), RESOURCES[names[0]]
        records = json.loads((ROOT / names[1]).read_text())["Records"]
        for record in records:
            sqs.send_message(QueueUrl=url, MessageBody=record["body"])
        print(f"  {len(records)} messages sent to {url.rsplit('/', 1)[-1]}")
    elif command == "push-endpoint":
        sns = client("sns")
        app = sns.create_platform_application(
            Name="adworkers-local-fcm", Platform="GCM", Attributes={"PlatformCredential": "local"}
        )["PlatformApplicationArn"]
        print(sns.create_platform_endpoint(PlatformApplicationArn=app, Token=names[0])["EndpointArn"])
    elif command == "push-messages":
        # moto keeps what it "delivered" to each endpoint; its state API shows it.
        import urllib.request
        state = json.load(urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/data.json"))
        for endpoint in state.get("sns", {}).get("PlatformEndpoint", []):
            if endpoint.get("arn") == names[0]:
                for message in endpoint.get("messages", {}).values():
                    print(message)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(*sys.argv[1:])
