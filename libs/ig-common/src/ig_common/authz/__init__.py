"""Who may call what inside the suite: the table, the interceptor that enforces it, the verified caller."""

from ig_common.authz.caller import Caller, current_caller
from ig_common.authz.interceptor import AuthorizationInterceptor
from ig_common.authz.table import AuthorizationTable, Refusal, TableError
from ig_common.authz.user_token import USER_TOKEN_METADATA, ForwardedUser, sign_user_token

__all__ = ["USER_TOKEN_METADATA", "AuthorizationInterceptor", "AuthorizationTable", "Caller", "ForwardedUser",
           "Refusal", "TableError", "current_caller", "sign_user_token"]
