"""A ThingsBoard device provisioning exactly as the Edge Gateway's self-provisioning
script (for ThingsBoard) does (paho-mqtt, TLS with CERT_REQUIRED and a CA file, username `provision`,
subscribe /provision/response, publish JSON to /provision/request, wait up to 10 s),
parametrised for tests:

  tbserve-paho-device.py HOST PORT DEVICE_NAME
  env: THINGSBOARD_PROVISION_DEVICE_KEY, THINGSBOARD_PROVISION_DEVICE_SECRET,
       THINGSBOARD_CA_CERT (TLS on when set), TBSERVE_EXTRA_JSON (merged into the request),
       TBSERVE_RAW_PAYLOAD (sent instead of the JSON request: a malformed or oversized body)

Prints the raw answer on one line prefixed with "REPLY " and exits 0 when an answer
came, 3 when none came in time.
"""
import json
import os
import ssl
import sys
from time import sleep

from paho.mqtt.client import Client

provision_reply = None


def main():
    global provision_reply
    host, port, device_name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    mqtt_client = Client()
    mqtt_client.username_pw_set("provision", None)
    if os.environ.get("THINGSBOARD_CA_CERT") is not None:
        mqtt_client.tls_set(cert_reqs=ssl.CERT_REQUIRED, ca_certs=os.environ.get("THINGSBOARD_CA_CERT"))
    mqtt_client.connect(host, port)

    def on_message_callback(client, userdata, message):
        global provision_reply
        provision_reply = message.payload

    mqtt_client.on_message = on_message_callback
    mqtt_client.subscribe("/provision/response", qos=1)
    mqtt_client.loop_start()
    sleep(0.1)
    request = {
        "deviceName": device_name,
        "provisionDeviceKey": os.environ.get("THINGSBOARD_PROVISION_DEVICE_KEY"),
        "provisionDeviceSecret": os.environ.get("THINGSBOARD_PROVISION_DEVICE_SECRET"),
    }
    request.update(json.loads(os.environ.get("TBSERVE_EXTRA_JSON") or "{}"))
    raw = os.environ.get("TBSERVE_RAW_PAYLOAD")
    payload = raw if raw is not None else json.dumps(request)
    mqtt_client.publish("/provision/request", payload=payload, qos=1)
    for _ in range(100):
        if provision_reply is not None:
            break
        sleep(0.1)
    mqtt_client.loop_stop()
    mqtt_client.disconnect()
    if provision_reply is None:
        print("NO REPLY", flush=True)
        sys.exit(3)
    print("REPLY " + provision_reply.decode("utf-8"), flush=True)


if __name__ == "__main__":
    main()
