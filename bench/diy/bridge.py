"""The do-it-yourself serial-to-MQTT bridge most labs write, kept as they write it.

pyserial ``readline()`` on the dial's port, one MQTT message per sample with paho-mqtt
(QoS 0, network loop in paho's thread), a JSON payload::

    python bench/diy/bridge.py --port /dev/pts/N --broker-port 1883 --topic diy/dial/0

It sends ``start`` when the port is open and the client connected (the bench feeder starts
streaming then), runs until ``--samples`` lines were published or the port closes, and prints
``{"published": n, "bad_lines": m}``. No recording, no clock model, no loss accounting.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading

import paho.mqtt.client as paho
import serial
from paho.mqtt.enums import CallbackAPIVersion


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", required=True)
    ap.add_argument("--broker-port", type=int, required=True)
    ap.add_argument("--topic", default="diy/dial/0")
    ap.add_argument("--dial", default="0")
    ap.add_argument("--samples", type=int, required=True)
    a = ap.parse_args(argv)

    connected = threading.Event()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"diy-bridge-{a.dial}")
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", a.broker_port)
    client.loop_start()
    if not connected.wait(10):
        print(json.dumps({"error": "no broker"}), flush=True)
        return 1
    ser = serial.Serial(a.port, 115200, timeout=2)
    ser.write(b"start\n")
    published = bad = 0
    while published < a.samples:
        line = ser.readline()
        if not line:
            break  # timeout: the stream ended
        try:
            t_us, count = (int(x) for x in line.split(b","))
        except ValueError:
            bad += 1
            continue
        client.publish(a.topic, json.dumps({"dial": a.dial, "t_us": t_us, "count": count}),
                       qos=0)
        published += 1
    ser.close()
    client.loop_stop()
    client.disconnect()
    print(json.dumps({"published": published, "bad_lines": bad}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
