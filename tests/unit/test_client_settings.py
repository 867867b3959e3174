"""The command-line clients' settings: read from the environment in one place, flags win."""

from __future__ import annotations

import pytest

from mutualrec.cli import build_parser
from mutualrec.config import ClientSettings, load_client_settings


def test_without_variables_clients_call_the_embedded_servers_address() -> None:
    assert load_client_settings({}) == ClientSettings(
        server="127.0.0.1:50051",
        api_key="",
        token="",
        server_ca="",
        client_cert="",
        client_key="",
    )


def test_each_variable_is_read() -> None:
    settings = load_client_settings(
        {
            "MUTUALREC_SERVER": "10.0.0.5:443",
            "MUTUALREC_API_KEY": "mrk_key",
            "MUTUALREC_TOKEN": "mrp_token",
            "MUTUALREC_SERVER_CA": "ca.pem",
            "MUTUALREC_CLIENT_CERT": "client.pem",
            "MUTUALREC_CLIENT_KEY": "client.key",
        }
    )
    assert settings == ClientSettings(
        "10.0.0.5:443", "mrk_key", "mrp_token", "ca.pem", "client.pem", "client.key"
    )


@pytest.mark.parametrize("command", [["check", "LAB-K", "--patient-id", "1"], ["history"]])
def test_the_server_option_defaults_to_the_environments(command: list[str]) -> None:
    client = load_client_settings({"MUTUALREC_SERVER": "10.0.0.5:443"})
    parser = build_parser(client)

    assert parser.parse_args(command).server == "10.0.0.5:443"
    assert parser.parse_args([*command, "--server", "[::1]:50051"]).server == "[::1]:50051"
