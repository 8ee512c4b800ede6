"""Registering every component outside a Runner (notebooks, tests)."""
import datetime

from mmengine.registry import DefaultScope


def register_all_modules(init_default_scope=True):
    """Import every reca_toolkit module so all components are registered,
    and make ``reca_toolkit`` the default scope."""
    import reca_toolkit.datasets  # noqa: F401
    import reca_toolkit.engine  # noqa: F401
    import reca_toolkit.evaluation  # noqa: F401
    import reca_toolkit.models  # noqa: F401
    import reca_toolkit.visualization  # noqa: F401
    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != 'reca_toolkit':
        # A scope instance name is unique; the newest one is current.
        name = f'reca_toolkit-{datetime.datetime.now():%Y%m%d-%H%M%S-%f}'
        DefaultScope.get_instance(name, scope_name='reca_toolkit')
