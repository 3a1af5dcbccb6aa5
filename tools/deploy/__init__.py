"""Host tools: deploying to one device over SSH or to an Ansible fleet, and the offline wheelhouse."""
