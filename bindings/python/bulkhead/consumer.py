"""``bulkhead.MixpanelConsumer``: a drop-in consumer for mixpanel-python.

    from mixpanel import Mixpanel
    import bulkhead

    mp = Mixpanel(TOKEN, consumer=bulkhead.MixpanelConsumer())

mixpanel-python builds each message (with its token) and calls
``send(endpoint, json_message, api_key=None, api_secret=None)``; this hands the message to
the library's bounded queue and returns at once. Delivery happens in the background.

Every method of ``mixpanel.Mixpanel`` that goes through its consumer works through this one
(``track``, ``import_data``, ``merge``, ``people_*``, ``group_*``). ``Mixpanel.alias`` does
not: it always sends its own synchronous request with a new ``mixpanel.Consumer``, whatever
consumer was given. Use :meth:`bulkhead.Client.alias` instead (it needs a client with a
token: ``MixpanelConsumer(token=TOKEN).client.alias(alias_id, distinct_id)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Tuple, Type, Union

from .client import Client, ClientOptions, ErrorHandler, Stats

if TYPE_CHECKING:
    from typing_extensions import Unpack
from .errors import ClosedError

__all__ = ["MixpanelConsumer", "MixpanelException"]

_ENDPOINTS = ("events", "people", "groups", "imports")


class MixpanelException(Exception):
    """Raised for malformed input when the ``mixpanel`` package is not importable.

    When it is, ``mixpanel.MixpanelException`` itself is raised instead.
    """


def _exception_class() -> Type[Exception]:
    try:
        from mixpanel import MixpanelException as mp_exc  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return mp_exc  # type: ignore[no-any-return]
    except Exception:
        return MixpanelException


class MixpanelConsumer:
    """A mixpanel-python consumer backed by a :class:`bulkhead.Client`.

    Keyword arguments are the client's configuration (``api_host``, ``queue_capacity``,
    ``api_secret``, …). ``credentials`` takes a ``mixpanel.ServiceAccountCredentials`` for
    ``/import``. ``token`` is optional: every message mixpanel-python builds carries its own.
    Without one, ``self.client`` has no token either and only forwards such messages: its
    own ``track``, ``people_*``, ``alias``… raise :class:`bulkhead.Error` (``ValueError``).

    ``send`` never raises on delivery trouble or a full queue (the event is dropped and
    counted); it raises ``MixpanelException`` only for an unknown endpoint or a malformed
    message.
    """

    def __init__(
        self,
        token: Optional[str] = None,
        *,
        on_error: Optional[ErrorHandler] = None,
        flush_timeout: float = 2.0,
        credentials: Any = None,
        **config: Unpack[ClientOptions],
    ) -> None:
        if credentials is not None:  # mixpanel.ServiceAccountCredentials (duck-typed)
            config.setdefault("service_account_username", credentials.username)
            config.setdefault("service_account_secret", credentials.secret)
            config.setdefault("project_id", credentials.project_id)
        # "" (like null) asks the core for a client without a token of its own.
        self.client = Client(token or "", on_error=on_error, **config)
        self.flush_timeout = flush_timeout

    def send(
        self,
        endpoint: str,
        json_message: Union[str, bytes],
        api_key: Union[None, str, Tuple[str, str]] = None,
        api_secret: Optional[str] = None,
    ) -> bool:
        """Queues one message for ``endpoint`` (``events``, ``people``, ``groups``,
        ``imports``). Returns False when it was dropped (queue full, consumer closed)."""
        if endpoint not in _ENDPOINTS:
            raise _exception_class()(
                'No such endpoint "{0}". Valid endpoints are one of {1}'.format(
                    endpoint, list(_ENDPOINTS)
                )
            )
        if isinstance(api_key, tuple):
            if len(api_key) != 2:
                raise _exception_class()("api_key tuple must be (api_key, api_secret)")
            api_key, api_secret = api_key
        # With no api_key/api_secret and no configured /import credentials, the core
        # authenticates an import with the message's own token.
        client = self.client
        if client.closed:
            return False
        try:
            return client.send(endpoint, json_message, api_key or None, api_secret or None)
        except ClosedError:
            return False
        except TypeError as e:
            raise _exception_class()(str(e)) from None
        except ValueError as e:
            raise _exception_class()(f"bulkhead: {e}") from None

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Waits (bounded) until what was sent so far is delivered; never raises."""
        try:
            return bool(self.client.flush(self.flush_timeout if timeout is None else timeout))
        except ClosedError:
            return False

    def close(self, timeout: Optional[float] = None) -> bool:
        return self.client.close(timeout)

    def stats(self) -> Stats:
        return self.client.stats()

    def __enter__(self) -> "MixpanelConsumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
