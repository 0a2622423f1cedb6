# Set-up, the same in every chapter: installs the package if it is missing (Colab),
# then seeds, picks the device and the profile, and finds (or downloads) Omniglot.
try:
    import fewshot_tutorial
except ImportError:
    import os
    source = os.environ.get("FEWSHOT_INSTALL", "fewshot-tutorial[book] @ git+https://github.com/fewshot-tutorial/fewshot-tutorial")
    %pip install -q "{source}"
from fewshot_tutorial.notebook import setup
device, profile, data_root, seed = setup(seed=0)
