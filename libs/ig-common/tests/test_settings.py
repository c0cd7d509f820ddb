import pytest
from ig_common.settings import GrpcServiceSettings, Port, SettingsError, load_settings


class ExampleSettings(GrpcServiceSettings):
    service_name: str = "example"
    grpc_port: Port = 50099
    http_port: Port = 8099


VALID = {"IG_DATABASE_URL": "postgresql://ig@127.0.0.1:55432/ig", "IG_KAFKA_BOOTSTRAP": "127.0.0.1:59092"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ["IG_DATABASE_URL", "IG_KAFKA_BOOTSTRAP", "IG_GRPC_PORT", "IG_HTTP_PORT", "IG_REGION"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_valid_environment_loads(clean_env: pytest.MonkeyPatch) -> None:
    for key, value in VALID.items():
        clean_env.setenv(key, value)
    settings = load_settings(ExampleSettings)
    assert settings.database_url == VALID["IG_DATABASE_URL"]
    assert settings.grpc_port == 50099


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("IG_DATABASE_URL", None, "IG_DATABASE_URL"),
        ("IG_KAFKA_BOOTSTRAP", None, "IG_KAFKA_BOOTSTRAP"),
        ("IG_DATABASE_URL", "mysql://x", "IG_DATABASE_URL"),
        ("IG_GRPC_PORT", "70000", "IG_GRPC_PORT"),
        ("IG_GRPC_PORT", "fifty", "IG_GRPC_PORT"),
        ("IG_REGION", "Region A!", "IG_REGION"),
    ],
)
def test_bad_setting_exits_naming_it(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str | None, named: str
) -> None:
    for key, good in VALID.items():
        clean_env.setenv(key, good)
    if value is None:
        clean_env.delenv(variable)
    else:
        clean_env.setenv(variable, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(ExampleSettings)
    assert raised.value.code == 2
    assert f"invalid setting {named}" in capsys.readouterr().err
