

def test_a_connection_closed_for_a_client_id_taken_twice_is_named() -> None:
    """Found by a black-box test: two daemons with one --daemon-id disconnected each other
    72 times in 35 s and said only "Disconnected during message iteration"."""
    from aiomqtt.exceptions import MqttCodeError, MqttError
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from ratedial.mqtt.acks import disconnect_reason

    def lost(code: int) -> MqttError:
        try:
            try:
                raise MqttCodeError(ReasonCode(PacketTypes.DISCONNECT, identifier=code),
                                    "Unexpected disconnection")
            except MqttCodeError as inner:
                raise MqttError("Disconnected during message iteration") from inner
        except MqttError as outer:
            try:
                raise MqttError(f"connection lost: {outer}") from outer
            except MqttError as e:
                return e

    who = "daemon with the same --daemon-id"
    taken = disconnect_reason(lost(0x8E), "ratedial-dup", who)
    assert "session taken over" in taken and "ratedial-dup" in taken and who in taken
    closed = disconnect_reason(lost(0x80), "ratedial-dup", who)
    assert closed.startswith("connection lost") and "ratedial-dup" in closed and who in closed
    assert "it restarted" in closed  # mosquitto closes the same way when it shuts down
    plain = MqttError("[Errno 111] Connection refused")
    assert disconnect_reason(plain, "ratedial-dup", who) == str(plain)


def test_only_a_refused_connect_is_a_refused_password() -> None:
    """A code review (2026-12-05): a DISCONNECT or SUBACK with 0x87 (an access rule, after
    the credentials were taken) was reported as a wrong user name or password."""
    from aiomqtt.exceptions import MqttCodeError, MqttConnectError
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    from ratedial.mqtt.acks import credentials_refused

    assert credentials_refused(MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=0x87)))
    assert credentials_refused(MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=0x86)))
    assert credentials_refused(MqttConnectError(5))  # MQTT 3.1.1: not authorised
    assert not credentials_refused(MqttCodeError(ReasonCode(PacketTypes.DISCONNECT,
                                                            identifier=0x87)))
    assert not credentials_refused(MqttCodeError(5, "paho: connection refused"))

